"""The checkout form's delivery details, filled as a user would (Playwright).

Every browser test that places an order through the page fills them first: the form
requires them (``static/js/checkout_details.js``).
"""

from __future__ import annotations

from playwright.sync_api import Page

DETAILS = {
    "name": "Ada Lovelace",
    "address": "12 St James's Square, London",
    "phone": "+44 20 7946 0958",
}


def fill_delivery_details(page: Page, **fields: str) -> dict[str, str]:
    """Type name, address and phone (``DETAILS`` with ``fields`` instead); return them."""
    values = {**DETAILS, **fields}
    for key, value in values.items():
        page.get_by_test_id(f"customer-{key}").fill(value)
    return values
