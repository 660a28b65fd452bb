// Display helpers: money in minor units, times, and the words for each status.

const money = new Intl.NumberFormat("en-IE", { style: "currency", currency: "EUR" });

export function formatMoney(minorUnits) {
  return money.format((minorUnits || 0) / 100);
}

export function formatTime(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
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
