// Page wiring: menu -> cart -> place order -> live tracking.

import { ProblemError, fetchOrder, newIdempotencyKey, placeOrder } from "./api.js";
import { CancelControl, markCancelled } from "./cancel.js";
import { Cart } from "./cart.js";
import { CheckoutDetails } from "./checkout_details.js";
import { DELIVERY_STEPS, ORDER_STEPS, formatMoney } from "./format.js";
import { MenuView } from "./menu.js";
import { describeShortage, isOrderId, showOrderFound, showOrderSummary } from "./order-summary.js";
import { Timeline, TrackingChannel } from "./tracking.js";

const $ = (id) => document.getElementById(id);

const cart = new Cart();
let placing = false; // an order request is in flight
let socket = null; // the TrackingChannel (SSE, else WebSocket) of the order on screen
let tracked = null; // the id of the order on screen
let cartInView = false; // the cart card is on screen: the phone's cart bar is not needed

// -- cart -----------------------------------------------------------------------

function renderCart() {
  const list = $("cart-lines");
  list.replaceChildren();
  for (const { item, quantity } of cart.lines.values()) {
    const li = document.createElement("li");
    li.className = "cart-line";
    li.dataset.testid = "cart-line";
    li.dataset.itemId = item.id;

    const name = document.createElement("span");
    name.className = "cart-name";
    name.textContent = item.name;

    const controls = document.createElement("span");
    controls.className = "qty";
    const minus = button("−", `Remove one ${item.name}`, "decrement", () => cart.decrement(item.id));
    const qty = document.createElement("output");
    qty.dataset.testid = "quantity";
    qty.textContent = String(quantity);
    qty.setAttribute("aria-label", `${quantity} × ${item.name}`);
    const plus = button("+", `Add one ${item.name}`, "increment", () => cart.add(item));
    plus.disabled = quantity >= item.stock;
    controls.append(minus, qty, plus);

    const price = document.createElement("span");
    price.className = "cart-price";
    price.textContent = formatMoney(item.price * quantity);

    const remove = button("✕", `Remove ${item.name} from your order`, "remove", () => cart.remove(item.id));
    remove.classList.add("ghost");

    li.append(name, controls, price, remove);
    if (quantity > item.stock) {
      // Stock fell under the cart (another customer ordered): say so where it is seen.
      li.classList.add("over");
      const note = document.createElement("span");
      note.className = "cart-note";
      note.dataset.testid = "cart-note";
      note.textContent = item.stock > 0 ? `Only ${item.stock} left` : "Sold out";
      li.append(note);
    }
    list.append(li);
  }
  $("cart-empty").hidden = !cart.isEmpty;
  $("cart-total").textContent = formatMoney(cart.total);
  const count = cart.count;
  $("cart-bar").hidden = cart.isEmpty || cartInView;
  $("cart-bar-count").textContent = `${count} item${count === 1 ? "" : "s"}`;
  $("cart-bar-total").textContent = formatMoney(cart.total);
  $("place-order").disabled = cart.isEmpty || placing;
}

function button(text, label, testid, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.textContent = text;
  el.dataset.testid = testid;
  el.setAttribute("aria-label", label);
  el.addEventListener("click", onClick);
  return el;
}

// -- placing the order --------------------------------------------------------------

function showError(message) {
  const el = $("order-error");
  el.textContent = message;
  el.hidden = !message;
}

// A refusal for lack of stock: read what is left, cut the cart down to it and say so.
// Nothing was ordered (the store reserves all lines or none).
async function offerWhatIsLeft(error) {
  await menu.refresh();
  const problem = error.problem ?? {};
  const known = new Map();
  if (typeof problem.item_id === "string" && Number.isInteger(problem.available)) {
    known.set(problem.item_id, problem.available);
  }
  const changes = cart.fitToStock(known);
  showError(describeShortage(problem, changes, cart.isEmpty));
  // An emptied cart disables "Place order", which would drop the focus to the page.
  if (cart.isEmpty) $("cart-title").focus();
}

async function onPlaceOrder() {
  if (cart.isEmpty || placing) return;
  const customer = details.read(); // null: the form marked what to fix
  if (!customer) {
    showError("Please check your delivery details.");
    return;
  }
  placing = true;
  showError("");
  const placeButton = $("place-order");
  placeButton.disabled = true;
  placeButton.textContent = "Placing order…";
  try {
    const order = await placeOrder(cart.toRequestLines(), newIdempotencyKey(), { customer });
    cart.clear();
    track(order.id, order); // the new stock arrives as a live event
    bringTrackingIntoView();
  } catch (error) {
    if (error instanceof ProblemError && error.status === 409) {
      await offerWhatIsLeft(error);
    } else {
      const detail = error instanceof ProblemError ? error.message : "Something went wrong. Please try again.";
      const onFields = error instanceof ProblemError && details.showServerErrors(error.problem);
      showError(onFields ? "Please check your delivery details." : detail);
      menu.refresh(); // e.g. an item left the menu: show the menu as it is now
    }
  } finally {
    placing = false;
    placeButton.textContent = "Place order";
    renderCart();
  }
}

// -- tracking -------------------------------------------------------------------------

const STATE_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  closed: "Closed",
  done: "Complete",
  cancelled: "Cancelled",
};

function setConnection(state, detail) {
  const pill = $("connection");
  pill.dataset.state = state;
  if (socket?.kind) pill.dataset.transport = socket.kind; // "sse" or "websocket" (a test hook)
  pill.textContent = STATE_TEXT[state] ?? state;
  if (detail) announce(detail);
}

function announce(text) {
  $("tracking-status").textContent = text;
}

// Keyboard focus and the view follow the reader to tracking (the phone's too, where
// the card sits below the menu and the cart).
function bringTrackingIntoView() {
  const title = $("tracking-title");
  const still = matchMedia("(prefers-reduced-motion: reduce)").matches;
  title.focus({ preventScroll: true });
  title.scrollIntoView({ behavior: still ? "auto" : "smooth", block: "start" });
}

function showMissing(orderId) {
  if (socket) socket.stop();
  socket = null;
  tracked = orderId;
  $("tracking").hidden = false;
  $("order-id").textContent = orderId;
  showOrderFound(false);
}

// A link (#order=<id>): the order from the store, then its live status; an id that
// names no order says so plainly instead of showing an empty timeline.
async function follow(orderId) {
  if (!isOrderId(orderId)) {
    showMissing(orderId);
    return;
  }
  let order = null;
  try {
    order = await fetchOrder(orderId);
    if (order === null) {
      showMissing(orderId);
      return;
    }
  } catch {
    order = null; // the store did not answer now: the live channel still brings the status
  }
  track(orderId, order);
}

function track(orderId, order) {
  if (!orderId) return;
  if (socket) socket.stop();
  tracked = orderId;
  history.replaceState(null, "", `#order=${encodeURIComponent(orderId)}`);

  const panel = $("tracking");
  panel.hidden = false;
  delete panel.dataset.status;
  delete panel.dataset.deliveryStatus;
  $("order-id").textContent = orderId;
  showOrderFound(true);
  showOrderSummary(order);
  const orderTimeline = new Timeline($("order-timeline"), ORDER_STEPS, "order-step");
  const deliveryTimeline = new Timeline($("delivery-timeline"), DELIVERY_STEPS, "delivery-step");
  $("delivery-pending").hidden = false;
  announce("Waiting for the first update…");
  if (order?.status) {
    orderTimeline.applyHistory(order.history);
    orderTimeline.advance(order.status);
  }

  const cancel = new CancelControl({
    orderId,
    anchor: $("tracking-status"),
    onCancelled: (cancelled) => showCancelled(cancelled.history?.at(-1)?.at),
  });
  if (order && order.status) cancel.update(order.status);
  const showCancelled = (at) => {
    if (panel.dataset.status === "cancelled") return;
    panel.dataset.status = "cancelled";
    cancel.update("cancelled");
    markCancelled($("order-timeline"), at);
    $("delivery-pending").hidden = true;
    announce("Your order is cancelled. Its items are back on the menu.");
    setConnection("cancelled");
    socket?.stop();
  };
  const sayOrder = (status) => {
    cancel.update(status);
    const step = ORDER_STEPS.find((s) => s.status === status);
    if (step) announce(step.says);
    panel.dataset.status = status;
    if (status === "delivered") {
      setConnection("done");
      socket?.stop();
    }
  };
  const sayDelivery = (status) => {
    $("delivery-pending").hidden = true;
    panel.dataset.deliveryStatus = status;
    const step = DELIVERY_STEPS.find((s) => s.status === status);
    if (step && panel.dataset.status !== "delivered") announce(step.says);
  };

  socket = new TrackingChannel({
    orderId,
    onState: setConnection,
    onMessage: (message) => {
      switch (message.type) {
        case "snapshot":
          orderTimeline.applyHistory(message.history);
          if (message.status === "cancelled") {
            showCancelled(message.history?.find((h) => h.status === "cancelled")?.at);
            break;
          }
          if (orderTimeline.advance(message.status)) sayOrder(message.status);
          else if (panel.dataset.status === undefined) sayOrder(message.status);
          if (message.delivery) {
            deliveryTimeline.applyHistory(message.delivery.history);
            if (deliveryTimeline.advance(message.delivery.status)) sayDelivery(message.delivery.status);
          }
          break;
        case "order.status":
          if (message.status === "cancelled") showCancelled(message.at);
          else if (orderTimeline.advance(message.status, message.at)) sayOrder(message.status);
          break;
        case "delivery.created":
        case "delivery.status":
          if (deliveryTimeline.advance(message.status, message.at)) sayDelivery(message.status);
          break;
        default:
          break;
      }
    },
  });
  socket.connect();
}

// -- start ------------------------------------------------------------------------------

const menu = new MenuView({ container: $("menu"), statusEl: $("menu-status"), cart });
const details = new CheckoutDetails($("delivery-details"), onPlaceOrder);
cart.onChange(renderCart);
cart.onChange((_, reason) => {
  if (reason === "user") showError(""); // the reader changed the cart: the old error is stale
});
$("place-order").addEventListener("click", onPlaceOrder);
new IntersectionObserver(([entry]) => {
  cartInView = entry.isIntersecting;
  renderCart();
}).observe($("cart"));
renderCart();
menu.start();

function linkedOrder() {
  return new URLSearchParams(location.hash.slice(1)).get("order");
}

async function followLink() {
  const linked = linkedOrder();
  if (linked === null || linked === tracked) return;
  await follow(linked);
  bringTrackingIntoView();
}

window.addEventListener("hashchange", followLink);
followLink();
