"""Announce stock set outside an order, so open pages show it (``menu-stream``).

Who calls this: whoever changes stock without placing an order -- ``orderflow refill``
and the operator console's set-stock and refill. Placing an order needs no call: its
``order.created.v1`` already tells the gateways that stock was reserved.

Published directly after the store's commit, not through the outbox: the event only
says "read the levels again", so losing one (Redis down at that moment) costs a page
a stale number until the next stock change, never a wrong order. The caller treats a
failed publish as a warning: the stock change itself is done.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from orderflow.agents.topics import MENU_STREAM, declare_topic
from orderflow.models.documents import utc_now
from orderflow.models.events import StockChanged
from orderflow.runtime import App
from orderflow.runtime.envelope import Envelope

log = logging.getLogger(__name__)


async def announce_stock_change(app: App, item_ids: Sequence[str] = (), *, source: str) -> bool:
    """Publish one ``stock.changed.v1`` (no ``item_ids``: every item); False if it failed."""
    topic = app.topics.get(MENU_STREAM) or declare_topic(app, MENU_STREAM)
    envelope = Envelope.new(StockChanged(item_ids=list(item_ids), at=utc_now()), source=source)
    try:
        await app.send_envelopes([(topic, envelope)])
    except Exception as exc:  # the stock change is committed; pages heal on the next one
        log.warning("stock change not announced on %s: %s", MENU_STREAM, exc)
        return False
    return True
