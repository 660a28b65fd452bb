"""The shop page as the browser tests drive it: viewports, fixtures and the few
gestures every test repeats (open the shop, add a dish, place an order that stays put).

Shared by tests/web/test_browser_polish.py and tests/web/test_browser_access.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.web.checkout_form import fill_delivery_details
from tests.web.test_browser import (
    UI_WAIT_MS,
    DemoStack,
    browser,
    chromium_path,
    opened,
    page,
    stack,
)

# The shared browser fixtures and helpers, re-exported so that a test module imports
# the shop from one place.
__all__ = ["UI_WAIT_MS", "DemoStack", "browser", "chromium_path", "opened", "page", "stack"]

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
VIEWPORTS = {"desktop": DESKTOP, "phone": PHONE}
MIN_TAP_PX = 44
TIMES = "\u00d7"  # how the page writes "2 x Funghi"


@pytest.fixture(params=sorted(VIEWPORTS))
def viewport_page(request: pytest.FixtureRequest, browser: Browser) -> Iterator[Page]:
    with opened(browser, VIEWPORTS[request.param]) as page:
        yield page


@pytest.fixture
def shop(stack: DemoStack, page: Page) -> Page:
    """The shop at 1280x900, its menu shown."""
    load(page, stack.url)
    return page


def dish(page: Page, item_id: str) -> Any:
    return page.locator(f'[data-testid="menu-item"][data-item-id="{item_id}"]')


def cart_line(page: Page, item_id: str) -> Any:
    return page.locator(f'[data-testid="cart-line"][data-item-id="{item_id}"]')


def add(page: Page, item_id: str, times: int = 1) -> None:
    for _ in range(times):
        dish(page, item_id).get_by_test_id("add-to-cart").click()


def load(page: Page, url: str) -> None:
    page.goto(url)
    expect(dish(page, "margherita")).to_be_visible(timeout=UI_WAIT_MS)


def orders_stay_put(page: Page) -> None:
    """Orders this page places are left alone by the simulator (``"simulate": false``),
    so a test can look at an order mid-way for as long as it likes."""

    def without_simulation(route: Route) -> None:
        request = route.request
        if request.method != "POST":
            route.continue_()
            return
        body = json.loads(request.post_data or "{}")
        route.continue_(post_data=json.dumps({**body, "simulate": False}))

    page.route(re.compile(r".*/api/v1/orders$"), without_simulation)


def place(page: Page) -> None:
    """Fill the checkout's delivery details and press "Place order"."""
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()


def place_a_held_order(page: Page, url: str, item_id: str) -> str:
    """One of ``item_id`` ordered through the page, left at ``created``; its id."""
    orders_stay_put(page)
    load(page, url)
    add(page, item_id, 1)
    place(page)
    expect(page.get_by_test_id("order-id")).to_have_text(re.compile(r"^[0-9a-f]{32}$"))
    return page.get_by_test_id("order-id").inner_text()


def focused_id(page: Page) -> str:
    return str(page.evaluate("document.activeElement ? document.activeElement.id : ''"))


def boxes_overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"]
        and b["x"] < a["x"] + a["width"]
        and a["y"] < b["y"] + b["height"]
        and b["y"] < a["y"] + a["height"]
    )
