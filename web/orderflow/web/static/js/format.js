// Display helpers: money in minor units, dates and times, and the words for each status.
// Money and dates follow the reader's locale (the browser's), in the menu's currency.

let money = currencyFormat("EUR");

function currencyFormat(code) {
  return new Intl.NumberFormat(undefined, { style: "currency", currency: code });
}

// The menu says which currency its prices are in (GET /api/v1/menu: "currency").
export function setCurrency(code) {
  if (typeof code !== "string" || !/^[A-Z]{3}$/.test(code)) return;
  try {
    money = currencyFormat(code);
  } catch {
    // an ISO code this browser does not know: keep the previous format
  }
}

// Prices are integers in the currency's minor units (cents; none for yen).
export function formatMoney(minorUnits) {
  const digits = money.resolvedOptions().maximumFractionDigits ?? 2;
  return money.format((minorUnits || 0) / 10 ** digits);
}

const timeOfDay = new Intl.DateTimeFormat(undefined, { timeStyle: "medium" });
const dayAndTime = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

function parseDate(iso) {
  if (!iso) return null;
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

// A step's time: the time of day today, the date as well on another day.
export function formatTime(iso) {
  const date = parseDate(iso);
  if (!date) return "";
  const today = new Date().toDateString() === date.toDateString();
  return today ? timeOfDay.format(date) : dayAndTime.format(date);
}

// When an order was placed: always with its date.
export function formatDateTime(iso) {
  const date = parseDate(iso);
  return date ? dayAndTime.format(date) : "";
}

export const ORDER_STEPS = [
  { status: "created", label: "Order placed", says: "We received your order." },
  { status: "confirmed", label: "Confirmed", says: "The kitchen confirmed your order." },
  { status: "preparing", label: "Preparing", says: "Your order is being prepared." },
  { status: "out_for_delivery", label: "Out for delivery", says: "Your order is out for delivery." },
  { status: "delivered", label: "Delivered", says: "Delivered. Enjoy your meal!" },
];

export const DELIVERY_STEPS = [
  { status: "waiting", label: "Courier assigned", says: "A courier is picking up your order." },
  { status: "on_the_way", label: "On the way", says: "Your courier is on the way." },
  { status: "delivered", label: "Handed over", says: "Your courier handed over the order." },
];

export function rankOf(steps, status) {
  return steps.findIndex((step) => step.status === status);
}
