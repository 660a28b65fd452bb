// The menu: cards grouped by category, with live stock pushed by the server.
// The menu is read once; then the stock arrives as "stock" events on
// /api/v1/menu/events (Server-Sent Events, docs/realtime.md#live-stock): each event
// carries every item's level, so a reconnect heals whatever was missed and no page
// ever polls. Cards are created once and updated in place, so updates never steal focus.

import { fetchMenu } from "./api.js";
import { formatMoney, setCurrency } from "./format.js";
import { parseMessage } from "./messages.js";

const MENU_EVENTS = "/api/v1/menu/events";
const LOAD_RETRY_MS = 3000;

export class MenuView {
  constructor({ container, statusEl, cart }) {
    this.container = container;
    this.statusEl = statusEl;
    this.cart = cart;
    this.items = new Map();
    this.cards = new Map();
    this.events = null;
    cart.onChange(() => this.refreshButtons());
  }

  // Load the menu once (retrying until it answers), then follow the stock live.
  async start() {
    while (!(await this.refresh())) {
      await new Promise((resolve) => setTimeout(resolve, LOAD_RETRY_MS));
    }
    this.follow();
  }

  follow() {
    if (typeof EventSource === "undefined") return; // no live stock; the cart still checks
    const events = new EventSource(MENU_EVENTS);
    this.events = events;
    events.addEventListener("stock", (event) => {
      const message = parseMessage(event.data);
      if (!message) return;
      this.applyStock(message.items || []);
      this.showStatus("live");
    });
    // The browser reconnects by itself (the server's retry: hint); the first event after
    // a reconnect is the current levels.
    events.addEventListener("error", () => this.showStatus("reconnecting"));
  }

  // One read of the menu: on load, and after an order the server refused.
  async refresh() {
    try {
      const { items, currency } = await fetchMenu();
      setCurrency(currency);
      this.render(items);
      this.showStatus("live");
      return true;
    } catch (error) {
      this.statusEl.textContent = `Could not load the menu (${error.message}). Retrying…`;
      this.statusEl.dataset.state = "error";
      return false;
    }
  }

  showStatus(state) {
    const live = state === "live" ? " · live stock" : " · reconnecting for live stock…";
    this.statusEl.textContent = `${this.items.size} dishes${this.events === null ? "" : live}`;
    this.statusEl.dataset.state = state === "live" ? "ok" : "error";
  }

  applyStock(levels) {
    for (const { id, stock } of levels) {
      const item = this.items.get(id);
      const card = this.cards.get(id);
      if (!item || !card || item.stock === stock) continue;
      const updated = { ...item, stock };
      this.items.set(id, updated);
      this.updateCard(card, updated);
    }
    this.cart.refreshItems(this.items);
  }

  render(items) {
    const seen = new Set();
    for (const item of items) {
      seen.add(item.id);
      this.items.set(item.id, item);
      const card = this.cards.get(item.id) ?? this.createCard(item);
      this.updateCard(card, item);
    }
    for (const [id, card] of this.cards) {
      if (!seen.has(id)) {
        card.root.remove();
        this.cards.delete(id);
        this.items.delete(id);
      }
    }
    this.cart.refreshItems(this.items);
  }

  groupFor(category) {
    const id = `category-${category.replace(/[^a-z0-9-]/gi, "-").toLowerCase()}`;
    let group = this.container.querySelector(`[data-category="${CSS.escape(category)}"]`);
    if (!group) {
      group = document.createElement("section");
      group.className = "category";
      group.dataset.category = category;
      group.setAttribute("aria-labelledby", id);
      const heading = document.createElement("h3");
      heading.id = id;
      heading.textContent = category.charAt(0).toUpperCase() + category.slice(1);
      const grid = document.createElement("ul");
      grid.className = "menu-grid";
      group.append(heading, grid);
      this.container.append(group);
    }
    return group.querySelector(".menu-grid");
  }

  createCard(item) {
    const root = document.createElement("li");
    root.className = "dish";
    root.dataset.testid = "menu-item";
    root.dataset.itemId = item.id;

    const title = document.createElement("h4");
    title.className = "dish-name";
    const description = document.createElement("p");
    description.className = "dish-description muted";
    const footer = document.createElement("div");
    footer.className = "dish-footer";
    const price = document.createElement("span");
    price.className = "dish-price";
    const stock = document.createElement("span");
    stock.className = "stock";
    stock.dataset.testid = "stock";
    const button = document.createElement("button");
    button.type = "button";
    button.className = "add";
    button.dataset.testid = "add-to-cart";
    button.addEventListener("click", () => {
      const current = this.items.get(item.id);
      if (current) this.cart.add(current);
    });
    footer.append(price, stock, button);
    root.append(title, description, footer);

    this.groupFor(item.category || "menu").append(root);
    const card = { root, title, description, price, stock, button };
    this.cards.set(item.id, card);
    return card;
  }

  updateCard(card, item) {
    card.title.textContent = item.name;
    card.description.textContent = item.description || "";
    card.price.textContent = formatMoney(item.price);
    card.root.dataset.stock = String(item.stock);
    if (item.stock <= 0) {
      card.stock.textContent = "Sold out";
      card.stock.dataset.level = "out";
    } else if (item.stock <= 5) {
      card.stock.textContent = `Only ${item.stock} left`;
      card.stock.dataset.level = "low";
    } else {
      card.stock.textContent = `${item.stock} in stock`;
      card.stock.dataset.level = "ok";
    }
    this.updateButton(card, item);
  }

  updateButton(card, item) {
    const inCart = this.cart.quantityOf(item.id);
    const canAdd = item.stock > inCart;
    card.button.disabled = !canAdd;
    card.button.textContent = "Add";
    card.button.setAttribute(
      "aria-label",
      canAdd ? `Add ${item.name} to your order` : `${item.name}: no more available`,
    );
  }

  refreshButtons() {
    for (const [id, card] of this.cards) {
      const item = this.items.get(id);
      if (item) this.updateButton(card, item);
    }
  }
}
