"""Locust load profile for orderflow: browse the menu, order, poll the order.

A customer mostly reads the menu, sometimes orders one or two in-stock items,
and polls the orders it placed (as the UI does when the WebSocket is not
available). An out-of-stock answer (409) is a correct answer, not a failure:
under sustained load the demo menu runs out, and the run must still say
whether the API answered correctly. Refill with ``orderflow refill``.

Headless run against ``orderflow demo`` (another terminal):

    locust -f benchmarks/locustfile.py --headless -u 20 -r 5 -t 30s --host http://127.0.0.1:8000
"""

from __future__ import annotations

import random
from typing import Any

from locust import HttpUser, between, task

MENU = "/api/v1/menu"
ORDERS = "/api/v1/orders"


def items_of(body: Any) -> list[dict[str, Any]]:
    """Menu items from a menu body (a list, or an object with ``items``)."""
    if isinstance(body, list):
        return [item for item in body if isinstance(item, dict)]
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        return [item for item in body["items"] if isinstance(item, dict)]
    return []


def order_id_of(body: Any) -> str | None:
    if isinstance(body, dict):
        if isinstance(body.get("id"), str):
            return body["id"]
        inner = body.get("order")
        if isinstance(inner, dict) and isinstance(inner.get("id"), str):
            return inner["id"]
    return None


class Customer(HttpUser):
    """One browsing customer; weights: menu 5, order 2, poll 3."""

    wait_time = between(0.2, 1.0)

    def on_start(self) -> None:
        self.menu: list[dict[str, Any]] = []
        self.order_ids: list[str] = []
        self.read_menu()

    @task(5)
    def read_menu(self) -> None:
        with self.client.get(MENU, name="GET /api/v1/menu", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"menu answered {response.status_code}")
                return
            self.menu = items_of(response.json())
            if not self.menu:
                response.failure("menu is empty")

    @task(2)
    def place_order(self) -> None:
        in_stock = [item for item in self.menu if int(item.get("stock", 0)) > 0]
        if not in_stock:
            return
        chosen = random.sample(in_stock, k=min(len(in_stock), random.choice((1, 1, 2))))
        body = {"lines": [{"item_id": item["id"], "quantity": 1} for item in chosen]}
        with self.client.post(
            ORDERS, json=body, name="POST /api/v1/orders", catch_response=True
        ) as response:
            if response.status_code == 201:
                order_id = order_id_of(response.json())
                if order_id:
                    self.order_ids = [*self.order_ids[-19:], order_id]
                else:
                    response.failure("201 without an order id")
            elif response.status_code == 409:
                response.success()  # out of stock is a correct answer under load
            else:
                response.failure(f"order answered {response.status_code}: {response.text[:200]}")

    @task(3)
    def poll_order(self) -> None:
        if not self.order_ids:
            return
        order_id = random.choice(self.order_ids)
        with self.client.get(
            f"{ORDERS}/{order_id}", name="GET /api/v1/orders/{id}", catch_response=True
        ) as response:
            if response.status_code != 200:
                response.failure(f"order poll answered {response.status_code}")
            elif order_id_of(response.json()) != order_id:
                response.failure("order poll returned another order")
