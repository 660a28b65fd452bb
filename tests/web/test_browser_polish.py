"""The shop as a careful new user meets it, in Chromium, at 1280x900 and at 390x844.

Each defect of issue 12 point 5 has a test here, against ``orderflow demo``:

* a 409 cuts the cart down to what is left (a sold-out line goes, a short line is
  reduced), says so in plain words, and the message goes when the reader changes the cart;
  a cart line the stock fell under says so at once;
* after "Place order" keyboard focus and the view move to tracking, which lists what
  was ordered with its total; a reload resumes tracking from the ``#order=`` link;
* the cart and the tracking card never overlap while the page scrolls (their boxes are
  compared at every scroll position), at both viewports;
* an unknown or malformed link says "No such order" and shows no timeline.

Keyboard, tap sizes and contrast: tests/web/test_browser_access.py.
"""

from __future__ import annotations

import json
import re
import uuid

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.web.shop_page import (
    DESKTOP,
    TIMES,
    UI_WAIT_MS,
    DemoStack,
    add,
    boxes_overlap,
    browser,
    cart_line,
    chromium_path,
    dish,
    load,
    opened,
    orders_stay_put,
    page,
    place,
    place_a_held_order,
    shop,
    stack,
    viewport_page,
)
from tests.web.test_browser import shot

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page", "shop", "stack", "viewport_page"]  # fixtures


def test_a_409_offers_what_is_left_and_the_error_goes_when_the_cart_changes(
    stack: DemoStack, shop: Page
) -> None:
    page = shop
    add(page, "caprese", 3)
    add(page, "caesar-salad", 1)
    add(page, "garlic-bread", 1)
    expect(page.get_by_test_id("cart-line")).to_have_count(3)

    stack.set_stock("caprese", 2)  # other customers bought most of it ...
    stack.set_stock("caesar-salad", 0)  # ... and all of this
    place(page)

    error = page.get_by_test_id("order-error")
    expect(error).to_be_visible(timeout=UI_WAIT_MS)
    expect(error).to_contain_text("Only 2 Insalata Caprese left, so your order now has 2.")
    expect(error).to_contain_text("Caesar Salad is sold out, so it was taken out of your order.")
    expect(error).to_contain_text("Nothing was ordered yet")
    expect(cart_line(page, "caprese").get_by_test_id("quantity")).to_have_text("2")
    expect(cart_line(page, "caesar-salad")).to_have_count(0)
    expect(cart_line(page, "garlic-bread").get_by_test_id("quantity")).to_have_text("1")
    expect(page.get_by_test_id("tracking")).to_be_hidden()
    shot(page, "polish-409-recovered")

    cart_line(page, "garlic-bread").get_by_test_id("decrement").click()  # the reader's change
    expect(error).to_be_hidden()

    place(page)  # what is left can be ordered
    expect(page.get_by_test_id("tracking")).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-line")).to_have_count(1)
    expect(page.get_by_test_id("order-line")).to_have_text(
        re.compile(f"2 {TIMES} Insalata Caprese")
    )
    expect(dish(page, "caprese")).to_have_attribute("data-stock", "0", timeout=UI_WAIT_MS)


def test_an_emptied_cart_says_so_and_the_error_goes_when_something_is_added(
    stack: DemoStack, shop: Page
) -> None:
    page = shop
    add(page, "panna-cotta", 2)
    stack.set_stock("panna-cotta", 0)
    place(page)

    error = page.get_by_test_id("order-error")
    expect(error).to_contain_text("Panna Cotta is sold out", timeout=UI_WAIT_MS)
    expect(error).to_contain_text("your cart is now empty")
    expect(page.get_by_test_id("cart-empty")).to_be_visible()
    expect(page.get_by_test_id("place-order")).to_be_disabled()
    expect(page.locator("#cart-title")).to_be_focused()  # not lost with the disabled button

    add(page, "margherita")
    expect(error).to_be_hidden()


def test_after_placing_focus_and_view_move_to_tracking_which_lists_the_order(
    stack: DemoStack, viewport_page: Page
) -> None:
    page = viewport_page
    orders_stay_put(page)
    load(page, stack.url)
    add(page, "funghi", 2)
    add(page, "lemonade", 1)
    place(page)

    title = page.locator("#tracking-title")
    expect(title).to_be_focused(timeout=UI_WAIT_MS)
    expect(title).to_be_in_viewport(timeout=UI_WAIT_MS)
    lines = page.get_by_test_id("order-line")
    expect(lines).to_have_count(2)
    expect(lines.nth(0)).to_contain_text(f"2 {TIMES} Funghi")
    expect(lines.nth(1)).to_contain_text(f"1 {TIMES} Homemade Lemonade")
    total = page.evaluate(
        "new Intl.NumberFormat(undefined, {style: 'currency', currency: 'EUR'})"
        ".format((2 * 1090 + 390) / 100)"
    )
    expect(page.get_by_test_id("order-total")).to_have_text(total)
    expect(page.locator("#order-placed")).to_have_attribute("datetime", re.compile(r"^\d{4}-"))
    expect(page.get_by_test_id("order-step-created")).to_have_attribute("data-state", "current")


def test_a_reload_mid_order_resumes_tracking_from_the_link(stack: DemoStack, page: Page) -> None:
    order_id = place_a_held_order(page, stack.url, "diavola")
    assert page.url.endswith(f"#order={order_id}")

    page.reload()
    expect(page.get_by_test_id("order-id")).to_have_text(order_id, timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-line")).to_have_text(re.compile(f"1 {TIMES} Diavola"))
    expect(page.get_by_test_id("order-step-created")).to_have_attribute("data-state", "current")
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=UI_WAIT_MS
    )
    expect(page.locator("#tracking-title")).to_be_in_viewport(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-missing")).to_be_hidden()


def test_the_cart_and_tracking_never_overlap_while_scrolling(
    stack: DemoStack, viewport_page: Page
) -> None:
    page = viewport_page
    load(page, stack.url)
    add(page, "margherita", 1)
    place(page)
    expect(page.get_by_test_id("order-step-delivered")).to_have_attribute(
        "data-state", "done", timeout=UI_WAIT_MS
    )
    add(page, "margherita", 2)  # a full cart again, next to a full timeline
    add(page, "diavola", 1)
    expect(page.get_by_test_id("cart-line")).to_have_count(2)

    height = int(page.evaluate("document.documentElement.scrollHeight"))
    positions = [*range(0, height, 150), height]
    checked = 0
    for y in positions:
        page.evaluate(f"window.scrollTo(0, {y})")
        cart = page.get_by_test_id("cart").bounding_box()
        tracking = page.get_by_test_id("tracking").bounding_box()
        assert cart is not None and tracking is not None
        assert not boxes_overlap(cart, tracking), (y, cart, tracking)  # type: ignore[arg-type]
        checked += 1
    assert checked >= 5  # the page is long enough to scroll through at either size


def test_tracking_goes_on_without_the_summary_when_the_order_cannot_be_read(
    stack: DemoStack, page: Page
) -> None:
    order_id = place_a_held_order(page, stack.url, "funghi")

    def store_down(route: Route) -> None:  # only this read fails; the stream still works
        route.fulfill(
            status=503,
            content_type="application/problem+json",
            body=json.dumps({"status": 503, "title": "Store unavailable", "detail": "try later"}),
        )

    page.route(re.compile(rf".*/api/v1/orders/{order_id}$"), store_down)
    page.reload()
    expect(page.get_by_test_id("connection-state")).to_have_attribute(
        "data-state", "live", timeout=UI_WAIT_MS
    )
    expect(page.get_by_test_id("order-step-created")).to_have_attribute("data-state", "current")
    expect(page.get_by_test_id("order-summary")).to_be_hidden()
    expect(page.get_by_test_id("order-missing")).to_be_hidden()


@pytest.mark.parametrize(
    "link", ["0123456789abcdef0123456789abcdef", "not-an-order", "%3Cscript%3E"]
)
def test_an_unknown_or_malformed_link_says_no_such_order(
    stack: DemoStack, page: Page, link: str
) -> None:
    page.goto(f"{stack.url}/#order={link}")
    missing = page.get_by_test_id("order-missing")
    expect(missing).to_be_visible(timeout=UI_WAIT_MS)
    expect(missing).to_contain_text("No such order")
    expect(page.get_by_test_id("order-timeline")).to_be_hidden()
    expect(page.get_by_test_id("connection-state")).to_be_hidden()
    expect(page.get_by_text("Closed")).to_have_count(0)


def test_following_another_link_on_an_open_page_switches_the_order(
    stack: DemoStack, page: Page
) -> None:
    place_a_held_order(page, stack.url, "lasagne")
    expect(page.get_by_test_id("order-line")).to_have_text(re.compile("Lasagne"))

    page.evaluate("location.hash = 'order=ffffffffffffffffffffffffffffffff'")
    expect(page.get_by_test_id("order-missing")).to_be_visible(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-lines")).to_be_hidden()


def test_a_line_the_stock_fell_under_says_so_in_the_cart(stack: DemoStack, page: Page) -> None:
    stack.set_stock("lemonade", 5)
    load(page, stack.url)
    expect(page.get_by_test_id("menu-status")).to_contain_text("live stock", timeout=UI_WAIT_MS)
    add(page, "lemonade", 3)
    expect(page.get_by_test_id("cart-note")).to_have_count(0)

    response = httpx.post(  # another customer leaves two
        f"{stack.url}/api/v1/orders",
        json={"lines": [{"item_id": "lemonade", "quantity": 3}]},
        headers={"Idempotency-Key": str(uuid.uuid4())},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    note = cart_line(page, "lemonade").get_by_test_id("cart-note")
    expect(note).to_have_text("Only 2 left", timeout=UI_WAIT_MS)
    expect(note).to_be_visible()


def test_money_and_dates_follow_the_browsers_locale(stack: DemoStack, browser: Browser) -> None:
    with opened(browser, DESKTOP, locale="de-DE") as page:
        place_a_held_order(page, stack.url, "margherita")
        # German: comma decimals, the euro sign after the amount, day.month.year.
        expect(dish(page, "margherita").locator(".dish-price")).to_have_text("9,50\u00a0€")
        expect(page.get_by_test_id("order-total")).to_have_text("9,50\u00a0€")
        expect(page.locator("#order-placed")).to_have_text(re.compile(r"^\d{2}\.\d{2}\.\d{4}, "))
        time = page.get_by_test_id("order-step-created").locator("time")
        expect(time).to_have_text(re.compile(r"^\d{2}:\d{2}:\d{2}$"))  # 24-hour clock
