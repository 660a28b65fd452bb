// Live order tracking over the WebSocket, with reconnect, and the timeline it draws.
//
// Protocol (docs/realtime.md): a "snapshot" first, then "order.status",
// "delivery.created" and "delivery.status" messages. Close codes 4400 (malformed
// id) and 4404 (unknown order) are final: no reconnect. Any other drop
// reconnects with back-off, and the fresh snapshot fills whatever was missed.

import { DELIVERY_STEPS, ORDER_STEPS, formatTime, rankOf } from "./format.js";

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
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message.type !== "pong") this.onMessage(message);
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
    const base = Math.min(500 * 2 ** (this.attempt - 1), 8000);
    const delay = base / 2 + Math.random() * (base / 2);
    this.onState("reconnecting");
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.connect(), delay);
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
