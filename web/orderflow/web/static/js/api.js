// The REST calls the page makes, and the error shape it shows (RFC 9457 problem+json).

export class ProblemError extends Error {
  constructor(status, detail, problem = null) {
    super(detail);
    this.name = "ProblemError";
    this.status = status;
    this.problem = problem;
  }
}

export async function toProblem(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const detail =
    (body && (body.detail || body.title)) || `${response.status} ${response.statusText}`.trim();
  return new ProblemError(response.status, detail, body);
}

// The menu: { items, currency } (currency: the ISO 4217 code of every price).
export async function fetchMenu() {
  const response = await fetch("/api/v1/menu", { headers: { Accept: "application/json" } });
  if (!response.ok) throw await toProblem(response);
  const data = await response.json();
  return { items: data.items ?? [], currency: data.currency ?? null };
}

// One order (what was ordered, its status), or null when no order has this id.
export async function fetchOrder(orderId) {
  const response = await fetch(`/api/v1/orders/${encodeURIComponent(orderId)}`, {
    headers: { Accept: "application/json" },
  });
  if (response.status === 404) return null;
  if (!response.ok) throw await toProblem(response);
  return response.json();
}

// One key per attempt: a retry of the same attempt (network error) reuses it,
// so the server returns the first result instead of placing a second order.
export function newIdempotencyKey() {
  if (globalThis.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

// customer: {name, address, phone} (the checkout's delivery details), sent when given.
export async function placeOrder(lines, idempotencyKey, { retries = 1, customer = null } = {}) {
  const request = {
    method: "POST",
    headers: {
      "Content-Type": "application/json",
      Accept: "application/json",
      "Idempotency-Key": idempotencyKey,
    },
    body: JSON.stringify(customer ? { lines, customer } : { lines }),
  };
  for (let attempt = 0; ; attempt += 1) {
    let response;
    try {
      response = await fetch("/api/v1/orders", request);
    } catch (error) {
      if (attempt < retries) continue; // same key: safe to repeat
      throw new ProblemError(0, "The server could not be reached. Check your connection and try again.");
    }
    if (!response.ok) throw await toProblem(response);
    return response.json();
  }
}
