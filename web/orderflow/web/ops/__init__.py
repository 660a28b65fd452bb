"""The operator console: ``/ops`` (a page) over a JSON API under ``/api/v1/ops/``.

Off unless ``ORDERFLOW_OPERATOR_TOKEN`` is set: without a token neither the page nor
the API exists (404), so a deployment that never configured one exposes nothing.
With one, every ``/api/v1/ops/`` call needs ``Authorization: Bearer <token>``
(:mod:`.auth`), and every call that changes something is an audit log line. The
page itself holds no data; it asks the operator for the token and calls the API.

One module per subject: :mod:`.streams` (streams, groups, consumers), :mod:`.dead_letters`,
:mod:`.menu` (stock), :mod:`.orders`, :mod:`.page`.
"""

from __future__ import annotations

from sanic import Sanic

from orderflow.agents.settings import Settings
from orderflow.web.ops import auth, dead_letters, menu, orders, page, streams


def register(app: Sanic, settings: Settings) -> bool:
    """Add the console to ``app`` if a token is configured; True if it was added."""
    token = settings.operator_token
    if token is None or not token.get_secret_value():
        return False
    auth.install(app, token.get_secret_value())
    streams.register(app)
    dead_letters.register(app)
    menu.register(app)
    orders.register(app)
    page.register(app)
    return True
