// What the tracking card says about the order itself: its items, total and when it was
// placed (from the 201 of POST /api/v1/orders or from GET /api/v1/orders/{id} when a
// link is followed), the plain "No such order" for an id that names none, and the
// words for an order refused for lack of stock.

import { formatDateTime, formatMoney } from "./format.js";

const $ = (id) => document.getElementById(id);

// Order ids are uuid4().hex: a link with anything else names no order.
export function isOrderId(value) {
  return typeof value === "string" && /^[0-9a-f]{32}$/.test(value);
}

// Without the order (the store did not answer) the section is left out, not drawn empty.
export function showOrderSummary(order) {
  $("order-summary").hidden = !order;
  const list = $("order-lines");
  list.replaceChildren();
  for (const line of order?.lines ?? []) {
    const li = document.createElement("li");
    li.className = "order-line";
    li.dataset.testid = "order-line";
    li.dataset.itemId = line.item_id;
    const what = document.createElement("span");
    what.textContent = `${line.quantity} × ${line.name}`;
    const price = document.createElement("span");
    price.className = "cart-price";
    price.textContent = formatMoney(line.unit_price * line.quantity);
    li.append(what, price);
    list.append(li);
  }
  $("order-total").textContent = order ? formatMoney(order.total) : "";
  const placed = $("order-placed");
  placed.textContent = order ? formatDateTime(order.created_at) : "";
  if (order?.created_at) placed.dateTime = order.created_at;
  placed.parentElement.hidden = !placed.textContent;
}

// Found: the summary and timelines; missing: only the plain "No such order".
export function showOrderFound(found) {
  $("order-missing").hidden = found;
  $("order-found").hidden = !found;
  $("connection").hidden = !found;
}

// After a 409: what the cart was cut down to, in plain words (changes from
// Cart.fitToStock), or the server's own detail when nothing needed cutting (the stock
// came back meanwhile).
export function describeShortage(problem, changes, cartIsEmpty) {
  if (changes.length === 0) {
    return `${problem?.detail ?? "Not enough stock."} The stock has changed since: please place your order again.`;
  }
  const said = changes.map(({ item, to }) =>
    to === 0
      ? `${item.name} is sold out, so it was taken out of your order.`
      : `Only ${to} ${item.name} left, so your order now has ${to}.`,
  );
  said.push(
    cartIsEmpty
      ? "Nothing was ordered, and your cart is now empty."
      : "Nothing was ordered yet: check your order and place it again.",
  );
  return said.join(" ");
}
