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

Apps that open the same URL in one process share one open store (one connection
pool, one SQLite writer): ``orderflow worker`` given several services' Apps runs them
in one process, and two pools there would only compete for the same database. The
store is opened by the first App that starts and closed when the last one stops
(:class:`SharedStore`); a process running one App behaves as before.

With the store comes its :class:`~orderflow.agents.publish_marks.PublishedMarks` (the
deferred "published" marks of the outbox), one per open store, so the Apps of one
process share it too and one transaction carries all their marks. It is flushed and
stopped just before the store closes: an App's clean stop leaves nothing unmarked.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from orderflow.agents.publish_marks import PublishedMarks
from orderflow.agents.settings import Settings, get_settings
from orderflow.models.store import Store, open_store
from orderflow.runtime import App


def published_marks_for(store: Store, settings: Settings) -> PublishedMarks | None:
    """The deferred marks of ``store``, timed by the ``outbox_mark_*`` settings; ``None``
    (each publish marks at once) when ``outbox_mark_interval_seconds`` is 0."""
    if settings.outbox_mark_interval_seconds == 0:
        return None
    return PublishedMarks(
        store,
        interval=settings.outbox_mark_interval_seconds,
        batch=settings.outbox_mark_batch,
        max_pending=settings.outbox_mark_max_pending,
    )


class StoreProvider:
    def __init__(self, store: Store | None, *, url: str) -> None:
        self._store = store
        self._url = url
        self._owned = False
        self._lock = asyncio.Lock()
        self._marks: PublishedMarks | None = None
        self._marks_made = False

    async def marks(self) -> PublishedMarks | None:
        """The deferred marks of the store (opening it first if need be); ``None`` when
        the settings defer nothing."""
        store = await self.get()
        if not self._marks_made:
            self._marks = published_marks_for(store, get_settings())
            self._marks_made = True
        return self._marks

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
        marks, self._marks, self._marks_made = self._marks, None, False
        if marks is not None:
            await marks.close()
        store, owned = self._store, self._owned
        if owned and store is not None:
            self._store = None
            self._owned = False
            await store.close()


class StoreSource(Protocol):
    """What a handler asks for its store: the open store (opened on first use), and the
    deferred marks its publishes hand their ids to."""

    async def get(self) -> Store: ...

    async def marks(self) -> PublishedMarks | None: ...


class SharedStore:
    """An App's use of the process-wide store of ``url``: one :class:`StoreProvider` per URL
    for every App using it, opened by the first user and closed by the last.

    The shared provider is made by the first user and forgotten after the last, so a
    later App (another test, another event loop) opens a fresh one."""

    _providers: dict[str, tuple[StoreProvider, int]] = {}

    def __init__(self, url: str) -> None:
        self.url = url
        self._provider: StoreProvider | None = None

    def _acquire(self) -> StoreProvider:
        if self._provider is None:
            provider, users = self._providers.get(self.url, (None, 0))
            if provider is None:
                provider = StoreProvider(None, url=self.url)
            self._providers[self.url] = (provider, users + 1)
            self._provider = provider
        return self._provider

    async def get(self) -> Store:
        return await self._acquire().get()

    async def marks(self) -> PublishedMarks | None:
        return await self._acquire().marks()

    async def close(self) -> None:
        """This App is done with the store; the last App done closes it."""
        provider, self._provider = self._provider, None
        if provider is None:
            return
        _, users = self._providers[self.url]
        if users > 1:
            self._providers[self.url] = (provider, users - 1)
            return
        del self._providers[self.url]
        await provider.close()


def attach_store(app: App, store: Store | None = None, *, url: str | None = None) -> StoreSource:
    """Give ``app`` a store and its deferred marks: opened in its ``on_startup`` hook (a
    worker whose store is unreachable fails at start instead of consuming), the marks
    flushed and the store closed in ``on_shutdown`` (after the last handler finished its
    transaction and its publish). ``store``, when given, is the caller's and is
    never closed here; otherwise the store of ``url`` (default: the settings' ``store_url``)
    is shared with the other Apps of this process that use it (:class:`SharedStore`)."""
    target = url or get_settings().store_url
    provider = StoreProvider(store, url=target) if store is not None else SharedStore(target)

    @app.on_startup
    async def open_store_at_start() -> None:
        await provider.marks()

    @app.on_shutdown
    async def close_store_at_stop() -> None:
        await provider.close()

    return provider
