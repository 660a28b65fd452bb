// Cancelling the order on screen (POST /api/v1/orders/{id}/cancel).
//
// "Cancel order" is offered only while the order is created or confirmed; once the
// kitchen has it (preparing or later) the button goes away. A click asks first (an
// inline "Yes, cancel it" / "Keep my order", no native dialog); the answer is said
// plainly: the order is cancelled (its items go back on the menu), or the API's 409
// detail (too late) is shown as it is. A repeated cancel is harmless on the server, so
// a network error just lets the customer try again.

import { ProblemError, toProblem } from "./api.js";
import { formatTime } from "./format.js";

const CANCELLABLE = new Set(["created", "confirmed"]);

async function requestCancel(orderId) {
  let response;
  try {
    response = await fetch(`/api/v1/orders/${encodeURIComponent(orderId)}/cancel`, {
      method: "POST",
      headers: { Accept: "application/json" },
    });
  } catch {
    throw new ProblemError(0, "The server could not be reached. Check your connection and try again.");
  }
  if (!response.ok) throw await toProblem(response);
  return response.json();
}

function make(tag, { text, className, testid } = {}) {
  const el = document.createElement(tag);
  if (text) el.textContent = text;
  if (className) el.className = className;
  if (testid) el.dataset.testid = testid;
  if (tag === "button") el.type = "button";
  return el;
}

export class CancelControl {
  // anchor: the element the controls are placed after (one set per page).
  constructor({ orderId, anchor, onCancelled }) {
    this.orderId = orderId;
    this.onCancelled = onCancelled;
    this.status = null;
    this.final = false; // cancelled, or refused: never offered again for this order
    document.querySelector('[data-testid="cancel-area"]')?.remove();
    this.area = make("div", { className: "cancel-area", testid: "cancel-area" });
    this.button = make("button", { text: "Cancel order", className: "danger", testid: "cancel-order" });
    this.ask = make("div", { className: "cancel-confirm", testid: "cancel-confirm" });
    const question = make("p", { text: "Cancel this order? Its items go back on the menu." });
    this.yes = make("button", { text: "Yes, cancel it", className: "danger", testid: "confirm-cancel" });
    this.no = make("button", { text: "Keep my order", testid: "keep-order" });
    this.ask.append(question, this.yes, this.no);
    this.message = make("p", { className: "alert", testid: "cancel-error" });
    this.message.setAttribute("role", "alert");
    this.area.append(this.button, this.ask, this.message);
    this.button.hidden = this.ask.hidden = this.message.hidden = true;
    anchor.after(this.area);

    this.button.addEventListener("click", () => {
      this.button.hidden = true;
      this.ask.hidden = false;
      this.yes.focus();
    });
    this.no.addEventListener("click", () => {
      this.ask.hidden = true;
      this.update(this.status);
      this.button.focus();
    });
    this.yes.addEventListener("click", () => this.cancel());
  }

  // The order's status changed: offer the button only while a cancel is allowed.
  update(status) {
    this.status = status;
    const allowed = !this.final && CANCELLABLE.has(status);
    if (!allowed) this.ask.hidden = true;
    this.button.hidden = !allowed || !this.ask.hidden;
  }

  async cancel() {
    this.yes.disabled = this.no.disabled = true;
    this.message.hidden = true;
    try {
      const order = await requestCancel(this.orderId);
      this.final = true;
      this.ask.hidden = this.button.hidden = true;
      this.onCancelled(order);
    } catch (error) {
      const problem = error instanceof ProblemError ? error : null;
      if (problem && problem.status === 409) {
        this.final = true; // too late: the kitchen has it
        this.ask.hidden = this.button.hidden = true;
      } else {
        this.ask.hidden = true;
        this.update(this.status); // nothing happened: the customer may try again
      }
      this.message.textContent = problem ? problem.message : "Something went wrong. Please try again.";
      this.message.hidden = false;
    } finally {
      this.yes.disabled = this.no.disabled = false;
    }
  }
}

// Shows "Cancelled" in the order timeline, right after the last step reached; the
// steps it will never reach are marked skipped.
export function markCancelled(listEl, at) {
  if (listEl.querySelector('[data-status="cancelled"]')) return;
  const steps = Array.from(listEl.children);
  const reached = steps.filter((li) => li.dataset.state === "done" || li.dataset.state === "current");
  for (const li of steps) {
    if (li.dataset.state === "current") li.dataset.state = "done";
    else if (li.dataset.state === "pending") li.dataset.state = "skipped";
    li.removeAttribute("aria-current");
  }
  const li = make("li", { className: "step", testid: "order-step-cancelled" });
  li.dataset.status = "cancelled";
  li.dataset.state = "cancelled";
  li.setAttribute("aria-current", "step");
  const dot = make("span", { className: "dot" });
  dot.setAttribute("aria-hidden", "true");
  const label = make("span", { className: "step-label", text: "Cancelled" });
  const time = make("time", { className: "step-time muted", text: formatTime(at) });
  if (at) time.dateTime = at;
  li.append(dot, label, time);
  const last = reached[reached.length - 1];
  if (last) last.after(li);
  else listEl.append(li);
}
