// The cart: what the user is about to order. Pure state plus change listeners.

export class Cart {
  constructor() {
    this.lines = new Map(); // item id -> { item, quantity }
    this.listeners = new Set();
  }

  onChange(listener) {
    this.listeners.add(listener);
  }

  notify() {
    for (const listener of this.listeners) listener(this);
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

  // Keep names and prices current when the menu refreshes.
  refreshItems(itemsById) {
    for (const [id, line] of this.lines) {
      const item = itemsById.get(id);
      if (item) line.item = item;
    }
    this.notify();
  }

  get isEmpty() {
    return this.lines.size === 0;
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
