"""The store a service process uses, opened once from settings.

Service apps are module-level objects (``orderflow worker orderflow.agents.orders:app``)
built at import time, outside any event loop, so they cannot hold an open
store from the start. A :class:`StoreProvider` opens ``settings.store_url`` on
first use and closes it at shutdown; a test may hand it an already-open store
instead, which it then never closes. The store's budget per operation is
``worker_store_deadline_seconds``: no client waits for a worker, so it waits out a
long lock rather than fail the handler (which would be retried, then dead-lettered).
:func:`attach_store` ties the provider to an app's start and stop through the App's
``on_startup``/``on_shutdown`` hooks.
"""

from __future__ import annotations

import asyncio

from orderflow.agents.settings import get_settings
from orderflow.models.store import Store, open_store
from orderflow.runtime import App


class StoreProvider:
    def __init__(self, store: Store | None, *, url: str) -> None:
        self._store = store
        self._url = url
        self._owned = False
        self._lock = asyncio.Lock()

    async def get(self) -> Store:
        if self._store is not None:
            return self._store
        async with self._lock:
            if self._store is None:
                deadline = get_settings().worker_store_deadline_seconds
                self._store = await open_store(self._url, deadline=deadline)
                self._owned = True
            return self._store

    async def close(self) -> None:
        store, owned = self._store, self._owned
        if owned and store is not None:
            self._store = None
            self._owned = False
            await store.close()


def attach_store(app: App, store: Store | None = None, *, url: str | None = None) -> StoreProvider:
    """Give ``app`` a store: opened in its ``on_startup`` hook (a worker whose store is
    unreachable fails at start instead of consuming), closed in ``on_shutdown`` (after the
    last handler finished its transaction). ``store``, when given, is the caller's and is
    never closed here; otherwise ``url`` (default: the settings' ``store_url``) is opened."""
    provider = StoreProvider(store, url=url or get_settings().store_url)

    @app.on_startup
    async def open_store_at_start() -> None:
        await provider.get()

    @app.on_shutdown
    async def close_store_at_stop() -> None:
        await provider.close()

    return provider
