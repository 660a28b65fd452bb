"""``make screenshots``: the shop at 1280x900 and at 390x844, for the README.

Starts its own stack (a private Valkey and ``orderflow demo`` on free ports, data in a
temporary directory), drives Debian's Chromium (``/usr/bin/chromium``) through
Playwright like tests/web/test_browser_polish.py does, places one order, waits until
it is delivered, fills the cart again and writes ``docs/screenshots/desktop.png`` and
``docs/screenshots/phone.png``. Everything it started is stopped when it ends.

    .venv/bin/python -m tests.web.screenshots [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from orderflow.runtime.localserver import LocalRedisServer
from tests.web.checkout_form import fill_delivery_details
from tests.web.demo_stack import CHROMIUM, CHROMIUM_ARGS, UI_WAIT_MS, DemoStack

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def add(page: Page, item_id: str) -> None:
    card = page.locator(f'[data-testid="menu-item"][data-item-id="{item_id}"]')
    card.get_by_test_id("add-to-cart").click()


def capture(page: Page, url: str, path: Path, phone: bool) -> None:
    page.goto(url)
    expect(page.get_by_test_id("menu-item").first).to_be_visible(timeout=UI_WAIT_MS)
    add(page, "margherita")
    add(page, "margherita")
    add(page, "tiramisu")
    fill_delivery_details(page)
    page.get_by_test_id("place-order").click()
    expect(page.get_by_test_id("order-step-delivered")).to_have_attribute(
        "data-state", "done", timeout=UI_WAIT_MS
    )
    if phone:  # the phone shows where placing an order takes the reader: tracking
        page.evaluate("document.getElementById('tracking').scrollIntoView({block: 'start'})")
    else:  # the desktop shows the menu, a new cart and the delivered order side by side
        add(page, "diavola")
        page.evaluate("window.scrollTo(0, 0); document.querySelector('.side').scrollTop = 0")
        page.mouse.click(5, 5)  # move the focus ring off the last button
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with LocalRedisServer() as redis, tempfile.TemporaryDirectory(prefix="screens-") as data:
        stack = DemoStack(redis.url, Path(data))
        stack.start()
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
                )
                for name, (width, height) in VIEWPORTS.items():
                    context = browser.new_context(
                        viewport={"width": width, "height": height}, locale="en-IE"
                    )
                    path = args.out / f"{name}.png"
                    capture(context.new_page(), stack.url, path, phone=name == "phone")
                    context.close()
                    print(f"wrote {path}")
                browser.close()
        finally:
            stack.stop()


if __name__ == "__main__":
    main()
