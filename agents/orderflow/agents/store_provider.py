"""The store a service process uses, opened once from settings.

Service apps are module-level objects (``orderflow worker orderflow.agents.orders:app``)
built at import time, outside any event loop, so they cannot hold an open
store from the start. A :class:`StoreProvider` opens ``settings.store_url`` on
first use and closes it at shutdown; a test may hand it an already-open store
instead, which it then never closes. :class:`StoreApp` ties the provider to an
app's start and stop (the runtime's App has no start-up/shutdown hooks).
"""

from __future__ import annotations

import asyncio
from typing import Any

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
                self._store = await open_store(self._url)
                self._owned = True
            return self._store

    async def close(self) -> None:
        store, owned = self._store, self._owned
        if owned and store is not None:
            self._store = None
            self._owned = False
            await store.close()


class StoreApp(App):
    """An :class:`App` whose service needs the store: opened at start, closed after stop.

    The runtime's App has no start-up/shutdown hooks, so this subclass wraps
    ``start``/``stop``: opening first makes a worker fail fast when the store is
    unreachable, and closing after ``stop`` lets in-flight handlers finish their
    transactions. Handlers get the store with ``await app.stores.get()``.
    """

    def __init__(
        self, name: str, broker: str | None = None, *, store: Store | None = None, **options: Any
    ) -> None:
        super().__init__(name, broker, **options)
        self.stores = StoreProvider(store, url=self.settings.store_url)

    async def start(self) -> None:
        if not self.started:
            await self.stores.get()
        await super().start()

    async def stop(self) -> None:
        try:
            await super().stop()
        finally:
            await self.stores.close()
