"""The shop without a mouse, on a small touch screen and for weaker eyes, in Chromium.

* the whole order can be placed with Tab, Enter and Space alone, with a visible focus
  ring, and focus lands on tracking afterwards;
* on the phone (390x844) every button, link and field is at least 44 px both ways;
* every text has WCAG AA contrast and every field a visible edge, light and dark scheme.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.web.checkout_form import DETAILS
from tests.web.shop_page import (
    DESKTOP,
    MIN_TAP_PX,
    PHONE,
    TIMES,
    UI_WAIT_MS,
    DemoStack,
    add,
    browser,
    cart_line,
    chromium_path,
    dish,
    focused_id,
    load,
    opened,
    orders_stay_put,
    page,
    place_a_held_order,
    shop,
    stack,
)

pytestmark = pytest.mark.browser
__all__ = ["browser", "chromium_path", "page", "shop", "stack"]  # fixtures used by name below


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
    for field, value in DETAILS.items():  # the delivery details, typed
        tab_to(f"customer-{field}")
        page.keyboard.type(value)
    tab_to("place-order")
    assert page.evaluate("getComputedStyle(document.activeElement).outlineStyle") != "none"
    page.keyboard.press("Space")

    expect(page.locator("#tracking-title")).to_be_focused(timeout=UI_WAIT_MS)
    expect(page.get_by_test_id("order-line")).to_have_text(re.compile(f"2 {TIMES} Tiramisu"))
    assert focused_id(page) == "tracking-title"


def test_every_control_on_the_phone_is_big_enough_to_tap(
    stack: DemoStack, browser: Browser
) -> None:
    with opened(browser, PHONE) as page:
        load(page, stack.url)
        add(page, "margherita", 1)
        small = page.evaluate(
            """min => Array.from(document.querySelectorAll('button, a[href], input'))
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
# (24 px, or 18.66 px bold); a text field's edge 3:1 (WCAG 1.4.11). Disabled controls
# are exempt (WCAG 1.4.3).
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
  for (const input of document.querySelectorAll("input")) {  // a field's edge: 3:1
    if (!input.getClientRects().length) continue;
    const edge = lum(rgb(getComputedStyle(input).borderTopColor).slice(0, 3));
    const card = lum(background(input.parentElement));
    const ratio = (Math.max(edge, card) + 0.05) / (Math.min(edge, card) + 0.05);
    if (ratio < 3) low.push(`edge of #${input.id}: ${ratio.toFixed(2)}`);
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
