// Live order tracking, with reconnect, and the timeline it draws.
//
// Two transports with one protocol (docs/realtime.md): a "snapshot" first, then
// "order.status", "delivery.created" and "delivery.status" messages.
// TrackingChannel uses Server-Sent Events first (plain HTTP: passes proxies that
// break WebSocket upgrades; the browser resumes with Last-Event-ID by itself) and
// falls back to the WebSocket when the event stream fails before its first event
// (no EventSource, a proxy that buffers or refuses the stream, or an error the
// WebSocket can name: its close codes 4400/4404 are final, no reconnect).

import { DELIVERY_STEPS, ORDER_STEPS, formatTime, rankOf } from "./format.js";
import { parseMessage } from "./messages.js";

// Jittered exponential back-off: 0.5 s doubling to 8 s, each delay in [half, full].
function reconnectDelay(attempt) {
  const base = Math.min(500 * 2 ** (attempt - 1), 8000);
  return base / 2 + Math.random() * (base / 2);
}

const FINAL_CLOSE_CODES = new Map([
  [4400, "This order id is not valid."],
  [4404, "This order is unknown."],
]);

export class TrackingSocket {
  constructor({ orderId, onMessage, onState, pingMs = 25000 }) {
    this.orderId = orderId;
    this.onMessage = onMessage;
    this.onState = onState;
    this.pingMs = pingMs;
    this.socket = null;
    this.stopped = false;
    this.attempt = 0;
    this.pingTimer = null;
    this.retryTimer = null;
  }

  url() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    return `${scheme}://${location.host}/ws/v1/order-tracking/${encodeURIComponent(this.orderId)}`;
  }

  connect() {
    if (this.stopped) return;
    this.onState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url());
    this.socket = socket;
    socket.addEventListener("open", () => {
      this.attempt = 0;
      this.onState("live");
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), this.pingMs);
    });
    socket.addEventListener("message", (event) => {
      const message = parseMessage(event.data);
      if (message && message.type !== "pong") this.onMessage(message);
    });
    socket.addEventListener("close", (event) => {
      clearInterval(this.pingTimer);
      if (this.socket !== socket || this.stopped) return;
      const final = FINAL_CLOSE_CODES.get(event.code);
      if (final) {
        this.stopped = true;
        this.onState("closed", final);
        return;
      }
      this.scheduleReconnect();
    });
  }

  scheduleReconnect() {
    this.attempt += 1;
    this.onState("reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), reconnectDelay(this.attempt));
  }

  send(message) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(message));
    }
  }

  stop() {
    this.stopped = true;
    clearInterval(this.pingTimer);
    clearTimeout(this.retryTimer);
    if (this.socket) this.socket.close(1000, "done");
  }
}

// Tracking over Server-Sent Events. The browser reconnects by itself and sends the
// last event's id, so the server sends exactly what was missed. onFail() is called
// when the stream fails before it delivered anything (the caller falls back).
export class TrackingEvents {
  constructor({ orderId, onMessage, onState, onFail }) {
    this.orderId = orderId;
    this.onMessage = onMessage;
    this.onState = onState;
    this.onFail = onFail;
    this.source = null;
    this.received = false;
    this.stopped = false;
    this.retryTimer = null;
    this.attempt = 0;
  }

  url() {
    return `/api/v1/orders/${encodeURIComponent(this.orderId)}/events`;
  }

  connect() {
    if (this.stopped) return;
    this.onState(this.received ? "reconnecting" : "connecting");
    const source = new EventSource(this.url());
    this.source = source;
    const deliver = (event) => {
      const message = parseMessage(event.data);
      if (!message) return;
      this.received = true;
      this.attempt = 0;
      this.onState("live");
      this.onMessage(message);
    };
    source.addEventListener("open", () => {
      // Resumed: the server sends only what was missed, maybe nothing; we are live.
      if (this.received && this.source === source) this.onState("live");
    });
    for (const type of ["snapshot", "order.status", "delivery.created", "delivery.status"]) {
      source.addEventListener(type, deliver);
    }
    source.addEventListener("error", () => {
      if (this.source !== source || this.stopped) return;
      if (!this.received) {
        source.close();
        this.stopped = true;
        this.onFail();
        return;
      }
      if (source.readyState === EventSource.CONNECTING) {
        this.onState("reconnecting"); // the browser retries, resuming after the last id
        return;
      }
      // Closed for good (e.g. a 503 while reconnecting): a new stream after a back-off.
      this.attempt += 1;
      this.onState("reconnecting");
      clearTimeout(this.retryTimer);
      this.retryTimer = setTimeout(() => this.connect(), reconnectDelay(this.attempt));
    });
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.source) this.source.close();
  }
}

// SSE first, the WebSocket if the event stream does not work here (see the top).
export class TrackingChannel {
  constructor({ orderId, onMessage, onState }) {
    this.options = { orderId, onMessage, onState };
    this.transport = null;
    this.kind = null;
  }

  connect() {
    if (typeof EventSource === "undefined") {
      this.useSocket();
      return;
    }
    this.kind = "sse";
    this.transport = new TrackingEvents({ ...this.options, onFail: () => this.useSocket() });
    this.transport.connect();
  }

  useSocket() {
    this.kind = "websocket";
    this.transport = new TrackingSocket(this.options);
    this.transport.connect();
  }

  stop() {
    this.transport?.stop();
  }
}

// Draws one lifecycle as an ordered list of steps: done, current, pending.
export class Timeline {
  constructor(listEl, steps, testidPrefix) {
    this.listEl = listEl;
    this.steps = steps;
    this.items = new Map();
    this.times = new Map();
    this.status = null;
    listEl.replaceChildren();
    for (const step of steps) {
      const li = document.createElement("li");
      li.className = "step";
      li.dataset.testid = `${testidPrefix}-${step.status}`;
      li.dataset.status = step.status;
      li.dataset.state = "pending";
      const dot = document.createElement("span");
      dot.className = "dot";
      dot.setAttribute("aria-hidden", "true");
      const label = document.createElement("span");
      label.className = "step-label";
      label.textContent = step.label;
      const time = document.createElement("time");
      time.className = "step-time muted";
      li.append(dot, label, time);
      listEl.append(li);
      this.items.set(step.status, li);
    }
  }

  // Only moves forward: a status older than the current one is ignored.
  advance(status, at) {
    const rank = rankOf(this.steps, status);
    if (rank < 0 || rank <= rankOf(this.steps, this.status)) return false;
    if (at) this.times.set(status, at);
    this.status = status;
    this.paint();
    return true;
  }

  applyHistory(history) {
    for (const entry of history || []) {
      if (entry && entry.at) this.times.set(entry.status, entry.at);
    }
    this.paint();
  }

  paint() {
    const rank = rankOf(this.steps, this.status);
    const last = this.steps.length - 1;
    this.steps.forEach((step, index) => {
      const li = this.items.get(step.status);
      let state = index < rank ? "done" : index === rank ? "current" : "pending";
      if (index === rank && rank === last) state = "done";
      li.dataset.state = state;
      if (index === rank) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
      const time = li.querySelector("time");
      const stamp = index <= rank ? this.times.get(step.status) : undefined;
      time.textContent = stamp ? formatTime(stamp) : "";
      if (stamp) time.dateTime = stamp;
      else time.removeAttribute("datetime");
    });
  }
}

export { DELIVERY_STEPS, ORDER_STEPS };
