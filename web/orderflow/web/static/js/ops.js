// The operator console: sign in with the token, then live views over /api/v1/ops/.
// Everything shown is text set with textContent: dead letters carry whatever a
// producer wrote, and none of it may become markup.

import { ProblemError } from "./api.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "orderflow-ops-token";
const REFRESH_MS = 3000;
const RECENT_ORDERS = 20;
const STEP_LABELS = {
  confirmed: "Confirm",
  preparing: "Start preparing",
  out_for_delivery: "Send out for delivery",
  on_the_way: "Courier on the way",
  delivered: "Delivered",
};
let timer = null;

// -- the API ------------------------------------------------------------------------

async function call(path, { method = "GET", body } = {}) {
  const headers = { Accept: "application/json", Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(`/api/v1/ops/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (response.status === 401) {
    signOut((data && data.detail) || "The token was refused.");
    throw new ProblemError(401, "signed out");
  }
  if (!response.ok) {
    throw new ProblemError(response.status, (data && (data.detail || data.title)) || `${response.status}`, data);
  }
  return data;
}

function showError(message) {
  const el = $("ops-error");
  el.textContent = message || "";
  el.hidden = !message;
}

async function act(work) {
  try {
    showError("");
    await work();
  } catch (error) {
    if (error instanceof ProblemError && error.status === 401) return;
    showError(error instanceof ProblemError ? error.message : "The server could not be reached.");
  }
}

// -- small DOM helpers --------------------------------------------------------------------

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text ?? "—";
  if (className) td.className = className;
  return td;
}

function button(text, testid, onClick, className) {
  const el = document.createElement("button");
  el.type = "button";
  el.textContent = text;
  el.dataset.testid = testid;
  if (className) el.className = className;
  el.addEventListener("click", () => act(onClick));
  return el;
}

function fill(tbodyId, rows, emptyText, columns) {
  const body = $(tbodyId);
  body.replaceChildren(...rows);
  if (!rows.length) {
    const tr = document.createElement("tr");
    const td = cell(emptyText, "muted");
    td.colSpan = columns;
    tr.append(td);
    body.append(tr);
  }
}

function duration(ms) {
  if (ms === null || ms === undefined) return "—";
  if (ms < 1000) return `${ms} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms < 3_600_000) return `${Math.round(ms / 60_000)} min`;
  return `${(ms / 3_600_000).toFixed(1)} h`;
}

// -- views --------------------------------------------------------------------------------

async function refreshStreams() {
  const data = await call("streams");
  const rows = [];
  for (const stream of data.streams) {
    const groups = stream.groups.length ? stream.groups : [null];
    for (const group of groups) {
      const tr = document.createElement("tr");
      tr.dataset.stream = stream.name;
      tr.append(
        cell(stream.name),
        cell(String(stream.length), "num"),
        cell(group ? group.name : "no group"),
        cell(group ? String(group.consumers) : "", "num"),
        cell(group && group.lag !== null ? String(group.lag) : "—", "num"),
        cell(group ? String(group.pending) : "", "num"),
        cell(group ? duration(group.oldest_pending_age_ms) : ""),
      );
      rows.push(tr);
    }
  }
  fill("streams-body", rows, "No streams yet.", 7);
  $("dead-total").textContent = `(${data.dead_letters})`;
  $("refreshed").textContent = `updated ${new Date().toLocaleTimeString()}`;
}

async function refreshConsumers() {
  const data = await call("consumers");
  const rows = data.consumers.map((c) => {
    const tr = document.createElement("tr");
    tr.append(cell(c.stream), cell(c.group), cell(c.name), cell(String(c.pending), "num"), cell(duration(c.idle_ms)));
    return tr;
  });
  fill("consumers-body", rows, "No consumers.", 5);
}

async function refreshDeadLetters() {
  const data = await call("dead-letters?count=100");
  const rows = data.dead_letters.map((letter) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "dead-letter";
    tr.dataset.id = letter.id;
    const actions = document.createElement("td");
    actions.className = "actions";
    actions.append(
      button("Show", "show", async () => {
        const detail = $("dead-detail");
        detail.textContent = JSON.stringify(await call(`dead-letters/${letter.id}`), null, 2);
        detail.hidden = false;
      }),
      button("Replay", "replay", async () => {
        await call(`dead-letters/${letter.id}/replay`, { method: "POST" });
        await refreshAll();
      }),
      button("Delete", "delete", async () => {
        if (!confirm(`Delete dead letter ${letter.id}? Its event is gone for good.`)) return;
        await call(`dead-letters/${letter.id}`, { method: "DELETE" });
        await refreshAll();
      }, "danger"),
    );
    tr.append(
      cell(letter.id),
      cell(letter.stream),
      cell(letter.event_type),
      cell(String(letter.delivery_count), "num"),
      cell(`${letter.error_type}: ${letter.error_message}`),
      actions,
    );
    return tr;
  });
  fill("dead-body", rows, "No dead letters.", 6);
}

async function refreshStock() {
  const data = await call("menu");
  const rows = data.items.map((item) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "stock-row";
    tr.dataset.itemId = item.id;
    const input = document.createElement("input");
    input.type = "number";
    input.min = "0";
    input.value = String(item.stock);
    input.dataset.testid = "stock-input";
    input.setAttribute("aria-label", `Stock of ${item.name}`);
    const save = document.createElement("td");
    save.append(
      button("Save", "save-stock", async () => {
        const stock = Number(input.value);
        if (!Number.isInteger(stock) || stock < 0) throw new ProblemError(0, "Stock must be a whole number, 0 or more.");
        await call(`menu/${encodeURIComponent(item.id)}/stock`, { method: "PUT", body: { stock } });
        await refreshStock();
      }),
    );
    const stockCell = document.createElement("td");
    stockCell.append(input);
    tr.append(cell(item.name), stockCell, save);
    return tr;
  });
  fill("stock-body", rows, "The menu is empty.", 3);
}

function money(cents) {
  return (cents / 100).toFixed(2);
}

// next_step comes from the server (null: nothing to do now). The button sends the step
// it shows, so a click on a row that moved meanwhile is refused (409) instead of
// taking the step after.
async function refreshOrders() {
  const data = await call(`orders?limit=${RECENT_ORDERS}`);
  const rows = data.orders.map((order) => {
    const tr = document.createElement("tr");
    tr.dataset.testid = "order-row";
    tr.dataset.orderId = order.id;
    const marker = document.createElement("span");
    marker.className = "marker";
    marker.dataset.testid = "simulated";
    marker.dataset.simulated = String(order.simulate);
    marker.textContent = order.simulate ? "simulated" : "by hand";
    const simulation = document.createElement("td");
    simulation.append(marker);
    const action = document.createElement("td");
    if (!order.simulate && order.next_step) {
      const step = order.next_step;
      action.append(
        button(`${STEP_LABELS[step] || step} →`, "advance", async () => {
          await call(`orders/${order.id}/advance`, { method: "POST", body: { status: step } });
          await refreshOrders();
        }),
      );
    } else if (order.status === "cancelled") {
      const cancelled = document.createElement("span");
      cancelled.className = "muted";
      cancelled.dataset.testid = "cancelled";
      cancelled.textContent = "cancelled by the customer: never moves again";
      action.append(cancelled);
    } else if (!order.simulate && order.status !== "delivered") {
      const pending = document.createElement("span");
      pending.className = "muted";
      pending.textContent = "in progress…"; // the services are still applying the last step
      action.append(pending);
    }
    const status = cell(order.status.replaceAll("_", " "));
    status.dataset.testid = "order-status";
    const delivery = cell(order.delivery ? order.delivery.status.replaceAll("_", " ") : "—");
    delivery.dataset.testid = "delivery-status";
    tr.append(
      cell(order.id.slice(0, 12), "mono"),
      cell(new Date(order.created_at).toLocaleTimeString()),
      recipientCell(order.customer),
      cell(money(order.total), "num"),
      status,
      delivery,
      simulation,
      action,
    );
    return tr;
  });
  fill("orders-body", rows, "No orders yet.", 8);
}

// The courier's details, for the signed-in operator only: shown as text (never HTML),
// never written to the console or sent anywhere else.
function recipientCell(customer) {
  const td = document.createElement("td");
  td.dataset.testid = "order-recipient";
  if (!customer) {
    td.className = "muted";
    td.textContent = "—"; // placed through the API without delivery details
    return td;
  }
  for (const value of [customer.name, customer.address, customer.phone]) {
    const line = document.createElement("div");
    line.textContent = value;
    td.append(line);
  }
  return td;
}

async function refreshAll() {
  await Promise.all([refreshStreams(), refreshConsumers(), refreshDeadLetters(), refreshOrders()]);
}

// -- session ----------------------------------------------------------------------------------

function signOut(reason) {
  sessionStorage.removeItem(TOKEN_KEY);
  clearInterval(timer);
  timer = null;
  $("console").hidden = true;
  $("session").hidden = true;
  $("login").hidden = false;
  showError(reason || "");
}

async function signIn() {
  await refreshAll();
  await refreshStock();
  $("login").hidden = true;
  $("session").hidden = false;
  $("console").hidden = false;
  timer = setInterval(() => act(refreshAll), REFRESH_MS);
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value);
  $("token").value = "";
  act(signIn);
});
$("logout").addEventListener("click", () => signOut(""));
$("replay-all").addEventListener("click", () =>
  act(async () => {
    const result = await call("dead-letters/replay", { method: "POST", body: {} });
    showError(result.not_replayable.length ? `${result.not_replayable.length} could not be replayed.` : "");
    await refreshAll();
  }),
);
$("purge-all").addEventListener("click", () =>
  act(async () => {
    if (!confirm("Delete every dead letter? Their events are gone for good.")) return;
    await call("dead-letters/purge", { method: "POST", body: { all: true } });
    await refreshAll();
  }),
);
$("refill").addEventListener("click", () =>
  act(async () => {
    await call("menu/refill", { method: "POST", body: {} });
    await refreshStock();
  }),
);
$("find-order").addEventListener("submit", (event) => {
  event.preventDefault();
  act(async () => {
    const detail = $("order-detail");
    const id = $("order-id").value.trim();
    detail.textContent = JSON.stringify(await call(`orders/${encodeURIComponent(id)}`), null, 2);
    detail.hidden = false;
  });
});

if (sessionStorage.getItem(TOKEN_KEY)) act(signIn);
