// Decoding what the server pushes (WebSocket messages, Server-Sent Events' data):
// one JSON object, or null for anything else, which callers skip.

export function parseMessage(data) {
  try {
    const message = JSON.parse(data);
    return message !== null && typeof message === "object" ? message : null;
  } catch {
    return null;
  }
}
