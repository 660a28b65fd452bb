"""The shop as a careful new user meets it, in Chromium, at 1280x900 and at 390x844.

Each defect of issue 12 point 5 has a test here, against ``orderflow demo``:

* a 409 cuts the cart down to what is left (a sold-out line goes, a short line is
  reduced), says so in plain words, and the message goes when the reader changes the cart;
* after "Place order" keyboard focus and the view move to tracking, which lists what
  was ordered with its total; a reload resumes tracking from the ``#order=`` link;
* the cart and the tracking card never overlap while the page scrolls (their boxes are
  compared at every scroll position), at both viewports;
* the whole order can be placed with Tab, Enter and Space alone, with a visible focus ring;
* an unknown or malformed link says "No such order" and shows no timeline;
* on the phone every control is at least 44 px in both directions;
* every text has WCAG AA contrast, in the light and the dark colour scheme.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.web.test_browser import (
    UI_WAIT_MS,
    DemoStack,
    browser,
    chromium_path,
    opened,
    page,
    shot,
    stack,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page", "stack"]  # fixtures used by name below

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


def place_a_held_order(page: Page, url: str, item_id: str) -> str:
    """One of ``item_id`` ordered through the page, left at ``created``; its id."""
    orders_stay_put(page)
    load(page, url)
    add(page, item_id, 1)
    page.get_by_test_id("place-order").click()
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
    page.get_by_test_id("place-order").click()

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

    page.get_by_test_id("place-order").click()  # what is left can be ordered
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
    page.get_by_test_id("place-order").click()

    error = page.get_by_test_id("order-error")
    expect(error).to_contain_text("Panna Cotta is sold out", timeout=UI_WAIT_MS)
    expect(error).to_contain_text("your cart is now empty")
    expect(page.get_by_test_id("cart-empty")).to_be_visible()
    expect(page.get_by_test_id("place-order")).to_be_disabled()

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
    page.get_by_test_id("place-order").click()

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
    page.get_by_test_id("place-order").click()
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


def test_an_order_can_be_placed_with_the_keyboard_alone(shop: Page) -> None:
    page = shop
    orders_stay_put(page)

    def tab_to(testid: str, item_id: str | None = None, limit: int = 80) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            here = page.evaluate(
                "[document.activeElement.dataset.testid,"
                " document.activeElement.closest('[data-item-id]')?.dataset.itemId ?? null]"
            )
            if here[0] == testid and (item_id is None or here[1] == item_id):
                return
        raise AssertionError(f"Tab never reached {testid} {item_id or ''}")

    tab_to("add-to-cart", "tiramisu")
    ring = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert ring != "none"  # the focus is visible
    page.keyboard.press("Enter")
    page.keyboard.press("Space")
    expect(cart_line(page, "tiramisu").get_by_test_id("quantity")).to_have_text("2")
    tab_to("place-order")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Space")

    expect(page.locator("#tracking-title")).to_be_focused(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-line")).to_have_text(re.compile(f"2 {TIMES} Tiramisu"))
    assert focused_id(page) == "tracking-title"


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


def test_every_control_on_the_phone_is_big_enough_to_tap(
    stack: DemoStack, browser: Browser
) -> None:
    with opened(browser, PHONE) as page:
        load(page, stack.url)
        add(page, "margherita", 1)
        small = page.evaluate(
            """min => Array.from(document.querySelectorAll('button, a[href]'))
                .filter(el => el.offsetParent !== null && !el.classList.contains('skip-link'))
                .map(el => [el.dataset.testid || el.textContent.trim(),
                            el.getBoundingClientRect()])
                .filter(([, box]) => box.width < min || box.height < min)
                .map(([name, box]) => `${name}: ${box.width}x${box.height}`)""",
            MIN_TAP_PX,
        )
        assert small == []
        count = page.evaluate(
            "Array.from(document.querySelectorAll('button')).filter(b => b.offsetParent).length"
        )
        assert count > 14  # every dish's Add plus the cart's controls were measured


# Every visible text's contrast against the first opaque background behind it, its
# ancestors' opacity included (WCAG 2 relative luminance): 4.5:1, or 3:1 for large text
# (24 px, or 18.66 px bold). Disabled controls are exempt (WCAG 1.4.3).
LOW_CONTRAST_JS = """
() => {
  const rgb = (value) => (value.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const c = [r, g, b].map((v) => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
  };
  const background = (el) => {
    for (let node = el; node; node = node.parentElement) {
      const parts = rgb(getComputedStyle(node).backgroundColor);
      if (parts.length === 3 || (parts.length === 4 && parts[3] === 1)) return parts.slice(0, 3);
    }
    return rgb(getComputedStyle(document.documentElement).backgroundColor).slice(0, 3);
  };
  const low = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let text = walker.nextNode(); text; text = walker.nextNode()) {
    const el = text.parentElement;
    if (!text.textContent.trim() || !el.getClientRects().length) continue;
    if (el.closest("[hidden], :disabled, .skip-link, [aria-hidden='true']")) continue;
    const style = getComputedStyle(el);
    if (style.visibility !== "visible") continue;
    let opacity = 1; // a translucent ancestor blends the text into what is behind it
    for (let node = el; node; node = node.parentElement) {
      opacity *= Number(getComputedStyle(node).opacity);
    }
    const behind = background(el);
    const seen = rgb(style.color).slice(0, 3).map((v, i) => behind[i] + (v - behind[i]) * opacity);
    const fg = lum(seen);
    const bg = lum(behind);
    const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
    const size = parseFloat(style.fontSize);
    const large = size >= 24 || (size >= 18.66 && Number(style.fontWeight) >= 700);
    const what = text.textContent.trim().slice(0, 30);
    if (ratio < (large ? 3 : 4.5)) low.push(`${what}: ${ratio.toFixed(2)}`);
  }
  return low;
}
"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_text_has_enough_contrast(stack: DemoStack, browser: Browser, scheme: str) -> None:
    with opened(browser, DESKTOP, scheme) as page:
        stack.set_stock("sparkling-water", 0)  # a sold-out card, drawn quieter
        place_a_held_order(page, stack.url, "garlic-bread")
        expect(dish(page, "sparkling-water").get_by_test_id("stock")).to_have_text(
            "Sold out", timeout=UI_WAIT_MS
        )
        add(page, "margherita", 1)
        page.evaluate("document.getElementById('order-error').hidden = false")
        page.evaluate("document.getElementById('order-error').textContent = 'An error'")
        expect(page.get_by_test_id("connection-state")).to_have_attribute(
            "data-state", "live", timeout=UI_WAIT_MS
        )
        assert page.evaluate(LOW_CONTRAST_JS) == []


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
