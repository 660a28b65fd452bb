// The menu: cards grouped by category, with live stock polled from the API.
// Cards are created once and updated in place, so polling never steals focus.

import { fetchMenu } from "./api.js";
import { formatMoney } from "./format.js";

export class MenuView {
  constructor({ container, statusEl, cart, pollMs = 3000 }) {
    this.container = container;
    this.statusEl = statusEl;
    this.cart = cart;
    this.pollMs = pollMs;
    this.items = new Map();
    this.cards = new Map();
    this.timer = null;
    cart.onChange(() => this.refreshButtons());
  }

  start() {
    const tick = async () => {
      await this.refresh();
      this.timer = setTimeout(tick, this.pollMs);
    };
    tick();
  }

  async refresh() {
    if (document.hidden && this.items.size > 0) return; // no polling in a background tab
    try {
      const items = await fetchMenu();
      this.render(items);
      const now = new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      this.statusEl.textContent = `${items.length} dishes · stock updated ${now}`;
      this.statusEl.dataset.state = "ok";
    } catch (error) {
      this.statusEl.textContent = `Could not load the menu (${error.message}). Retrying…`;
      this.statusEl.dataset.state = "error";
    }
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
