// The cart: what the user is about to order. Pure state plus change listeners.
// Listeners get the reason of each change: "user" (the reader added or removed
// something), "items" (the menu brought new names, prices or stock) or "fit" (the cart
// was cut down to the stock left), so the page can tell the reader's own changes apart.

export class Cart {
  constructor() {
    this.lines = new Map(); // item id -> { item, quantity }
    this.listeners = new Set();
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  notify(reason = "user") {
    for (const listener of this.listeners) listener(this, reason);
  }

  quantityOf(itemId) {
    return this.lines.get(itemId)?.quantity ?? 0;
  }

  add(item, quantity = 1) {
    const line = this.lines.get(item.id);
    if (line) {
      line.quantity += quantity;
      line.item = item;
    } else {
      this.lines.set(item.id, { item, quantity });
    }
    this.notify();
  }

  decrement(itemId) {
    const line = this.lines.get(itemId);
    if (!line) return;
    line.quantity -= 1;
    if (line.quantity <= 0) this.lines.delete(itemId);
    this.notify();
  }

  remove(itemId) {
    if (this.lines.delete(itemId)) this.notify();
  }

  clear() {
    this.lines.clear();
    this.notify();
  }

  // Keep names, prices and stock current when the menu refreshes.
  refreshItems(itemsById) {
    for (const [id, line] of this.lines) {
      const item = itemsById.get(id);
      if (item) line.item = item;
    }
    this.notify("items");
  }

  // Cut every line down to the stock its item has left (a sold-out line goes), after
  // the server refused the order for lack of stock. Returns what changed, in cart
  // order: [{ item, from, to }] (to = 0: removed), for the page to say so. `known`
  // (item id -> available) holds what the refusal itself said, which wins over an
  // older stock level.
  fitToStock(known = new Map()) {
    const changes = [];
    for (const [id, line] of this.lines) {
      const left = Math.max(0, Math.min(line.item.stock, known.get(id) ?? Infinity));
      if (line.quantity <= left) continue;
      changes.push({ item: line.item, from: line.quantity, to: left });
      if (left === 0) this.lines.delete(id);
      else line.quantity = left;
    }
    if (changes.length > 0) this.notify("fit");
    return changes;
  }

  get isEmpty() {
    return this.lines.size === 0;
  }

  get count() {
    let count = 0;
    for (const { quantity } of this.lines.values()) count += quantity;
    return count;
  }

  get total() {
    let total = 0;
    for (const { item, quantity } of this.lines.values()) total += item.price * quantity;
    return total;
  }

  toRequestLines() {
    return Array.from(this.lines.values(), ({ item, quantity }) => ({ item_id: item.id, quantity }));
  }
}
