"""Checkout with delivery details in Chromium, against ``orderflow demo``.

The form asks for name, address and phone with labels and autofill hints; it points
out a missing or malformed field before any request (nothing is ordered), shows the
server's per-field 422 next to the field when the server's rules catch what the
page let through, and sends the details with the order, which the API then returns.
"""

from __future__ import annotations

import re

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.web.checkout_form import DETAILS, fill_delivery_details
from tests.web.test_browser import UI_WAIT_MS, DemoStack, browser, chromium_path, page, shot, stack

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page", "stack"]  # fixtures used by name below


def add_margherita(page: Page, url: str) -> None:
    page.goto(url)
    margherita = page.locator('[data-testid="menu-item"][data-item-id="margherita"]')
    expect(margherita).to_be_visible(timeout=UI_WAIT_MS)
    margherita.get_by_test_id("add-to-cart").click()
    expect(page.get_by_test_id("cart-line")).to_have_count(1)


def test_the_form_asks_for_details_with_labels_and_autofill(stack: DemoStack, page: Page) -> None:
    page.goto(stack.url)
    for key, autocomplete in (("name", "name"), ("address", "street-address"), ("phone", "tel")):
        field = page.get_by_test_id(f"customer-{key}")
        expect(field).to_have_attribute("autocomplete", autocomplete)
        expect(field).to_have_attribute("required", "")
        label = page.locator(f'label[for="customer-{key}"]')
        expect(label).to_contain_text(key.capitalize())
    expect(page.get_by_label("Phone")).to_have_attribute("type", "tel")


def test_checkout_with_details_and_a_per_field_error(stack: DemoStack, page: Page) -> None:
    add_margherita(page, stack.url)
    menu_before = httpx.get(f"{stack.url}/api/v1/menu").json()["items"]

    # Nothing filled in: every field says what it needs, focus goes to the first, no order.
    page.get_by_test_id("place-order").click()
    for key in ("name", "address", "phone"):
        expect(page.get_by_test_id(f"error-customer.{key}")).to_contain_text("is required")
        expect(page.get_by_test_id(f"customer-{key}")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_test_id("customer-name")).to_be_focused()
    expect(page.get_by_test_id("tracking")).to_be_hidden()

    # The page's hint for a phone with letters, before any request.
    fill_delivery_details(page, phone="call me maybe")
    page.get_by_test_id("place-order").click()
    phone_error = page.get_by_test_id("error-customer.phone")
    expect(phone_error).to_contain_text("Phone must be an international number")
    expect(page.get_by_test_id("error-customer.name")).to_be_hidden()
    expect(page.get_by_test_id("customer-phone")).to_be_focused()
    expect(page.get_by_test_id("tracking")).to_be_hidden()
    assert httpx.get(f"{stack.url}/api/v1/menu").json()["items"] == menu_before
    shot(page, "checkout-01-phone-hint")

    # What only the server catches is shown the same way: here the page's check is
    # bypassed, as an outdated page would, and the 422's per-field error is shown.
    page.evaluate(
        """() => {
          const original = window.fetch;
          window.fetch = (url, init) => {
            if (init && init.method === "POST") {
              const body = JSON.parse(init.body);
              body.customer.address = "x";
              init = { ...init, body: JSON.stringify(body) };
            }
            return original(url, init);
          };
        }"""
    )
    fill_delivery_details(page)
    with page.expect_response("**/api/v1/orders") as answer:
        page.get_by_test_id("place-order").click()
    assert answer.value.status == 422
    address_error = page.get_by_test_id("error-customer.address")
    expect(address_error).to_have_text(
        "Address must be 5 to 300 characters (surrounding spaces do not count)."
    )
    expect(page.get_by_test_id("customer-address")).to_be_focused()
    expect(page.get_by_test_id("order-error")).to_have_text("Please check your delivery details.")
    expect(page.get_by_test_id("cart-line")).to_have_count(1)  # the cart is kept
    shot(page, "checkout-02-server-error")

    # Fixed (a fresh page: the real fetch) -- the order goes out with the details.
    add_margherita(page, stack.url)
    fill_delivery_details(page, name="  Zoë O'Brien  ")
    page.get_by_test_id("customer-phone").press("Enter")  # Enter in a field places the order
    order_id = page.get_by_test_id("order-id")
    expect(order_id).to_have_text(re.compile(r"^[0-9a-f]{32}$"), timeout=UI_WAIT_MS)
    order = httpx.get(f"{stack.url}/api/v1/orders/{order_id.inner_text()}").json()
    assert order["customer"] == {**DETAILS, "name": "Zoë O'Brien"}
    expect(page.get_by_test_id("order-error")).to_be_hidden()
    shot(page, "checkout-03-placed")
