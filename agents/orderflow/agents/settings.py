"""The ordering system's settings: every knob is an ``ORDERFLOW_*`` environment variable.

Kept in one place so that operators read a single list: each field here is one
``ORDERFLOW_<FIELD>`` variable and the Helm chart's ConfigMap maps onto them
one-to-one. The README's "Configuration" table and docs/system.md are written by
hand from these fields; keep them in step when a field is added or renamed. The
runtime's own options (read sizes, retries, dedupe, shutdown, logging, metrics
port) are inherited from :class:`orderflow.runtime.settings.RuntimeSettings`, so
one environment configures both and every ``App`` of the system takes this object.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from orderflow.runtime.settings import RuntimeSettings


class Settings(RuntimeSettings):
    model_config = SettingsConfigDict(env_prefix="ORDERFLOW_", extra="ignore")

    # Where things live. An empty redis_url (inherited) means "start a private Valkey"
    # (only `orderflow demo` does that; workers and the API require a URL).
    # SQLite: `?group_commit=off` gives every write its own COMMIT, `?writer_lock=off`
    # drops the cross-process flock on `<db>-writer.lock`; PostgreSQL: `?group_commit=off`
    # gives every order its own transaction (docs/store.md).
    store_url: str = "sqlite:///.data/orderflow.db"
    data_dir: str = ".data"

    # HTTP / WebSocket front door.
    host: str = "127.0.0.1"
    port: int = 8000
    http_workers: int = 1
    cors_origins: str = ""  # comma-separated; empty disables CORS headers
    max_body_bytes: int = 16_384
    max_order_lines: int = 50
    # At most this many of one item per order line: below every seeded stock level
    # (the smallest is 12), so one anonymous request cannot buy an item out.
    max_line_quantity: int = Field(default=10, ge=1)
    # Orders per client address (docs/http.md#rate-limit): a token bucket in Redis of
    # `burst` orders, refilled at `per_minute`; 0 per minute turns it off (benchmarks
    # and load tests, which order from one address on purpose, set that).
    order_rate_limit_per_minute: float = Field(default=30.0, ge=0)
    order_rate_limit_burst: int = Field(default=10, ge=1)
    # Admission control (docs/http.md#admission-control): new orders get 503 `overloaded`
    # while the order pipeline's consumer groups are this many events behind (lag +
    # pending, summed), until they are down to half of it; 0 turns it off. Read every
    # poll interval by each API process; a group with a backlog and no progress for
    # stalled_after seconds (its worker is down, not overloaded) is left out.
    admission_max_backlog: int = Field(default=1000, ge=0)
    admission_poll_interval_seconds: float = Field(default=0.25, gt=0)
    admission_stalled_after_seconds: float = Field(default=5.0, gt=0)
    # Proxies whose X-Forwarded-For is believed (comma-separated IPs / CIDR blocks);
    # empty: the peer address is the client. The Helm chart trusts the private ranges.
    trusted_proxies: str = ""
    ws_ping_interval: float = 20.0
    ws_ping_timeout: float = 60.0
    # Tracking WebSocket input limits (docs/realtime.md#limits). A client message
    # larger than this is refused with close 1009 (a ping is 15 bytes).
    ws_max_message_bytes: int = Field(default=4096, ge=64)
    # Client messages allowed per socket: this many at once, refilled at ws_message_rate
    # per second; a client sending faster is closed with 1008.
    ws_message_burst: int = Field(default=20, ge=1)
    ws_message_rate: float = Field(default=2.0, gt=0)
    # A send to a client that has not read for this long gives up: the socket is closed
    # with 1013 rather than the server holding its output.
    ws_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # The kernel send buffer of each tracking socket (SO_SNDBUF; Linux doubles it for
    # its bookkeeping). Tracking messages are ~150 bytes; without a bound, Linux grows
    # a loopback or LAN socket's buffer up to net.ipv4.tcp_wmem's maximum (4 MiB), all
    # of it held for a client that never reads until the send timeout drops it.
    ws_send_buffer_bytes: int = Field(default=65_536, ge=4096)
    # Freeze the HTTP/WebSocket process's long-lived objects out of CPython's full
    # garbage collections (orderflow.web.heap_freeze): with 1,000 sockets one full
    # collection otherwise stops every socket's fan-out for ~200 ms or more.
    gc_freeze: bool = True
    # ... and hand them back to the collector (one full walk of the heap) after this
    # many connections have closed: the garbage cycles of closed connections wait at
    # most that long (about 37 KiB each).
    gc_thaw_after_closed_connections: int = Field(default=1000, ge=1)
    # Longest wait, in seconds, for a request's head and then for its body. A client
    # that announces more bytes than it sends gets a 408 problem after this long,
    # instead of holding the connection for Sanic's 60 s response timeout. 10 s moves
    # the largest body allowed (max_body_bytes) over even a slow mobile link.
    http_request_timeout_seconds: int = Field(default=10, ge=1)
    # The operator console (/ops, /api/v1/ops/*) exists only when this is set; every
    # ops call must present it as "Authorization: Bearer <token>". Use a long random
    # value (e.g. `python -c "import secrets; print(secrets.token_urlsafe(32))"`).
    operator_token: SecretStr | None = None
    # POST /api/v1/benchmark/noop: a JSON route that parses its body and does nothing
    # else, served only when this is true. benchmarks/load.py divides the order route's
    # throughput by this one's (post_vs_noop); the chart and the demo never set it.
    benchmark_noop_route: bool = False

    # Runtime options (read_count, read_block_ms, claim_idle_ms, max_deliveries,
    # retry_*_seconds, dedupe_ttl_seconds, shutdown_timeout_seconds, stream_maxlen,
    # admin_port, log_format, log_level, ...) come from RuntimeSettings.
    service: str = "orderflow"

    # Outbox relay: how often it looks, and how old an unpublished row must be
    # before the relay (rather than the API's own publish) takes it.
    outbox_relay_interval_seconds: float = Field(default=1.0, gt=0)
    outbox_relay_min_age_seconds: float = Field(default=5.0, ge=0)
    # Deferred "published" marks (orderflow.agents.publish_marks): a process writes the
    # marks of what it published in one store transaction this long after the first
    # one (0.25 s: one transaction per burst, and at one order at a time one per ~5
    # orders instead of one per order, each holding SQLite's file lock the next hop's
    # commit waits for; long before the relay's min age, which must be at least 10x
    # this), at once when `batch` ids wait (also the most ids per store call), and
    # keeps at most `max_pending` ids while the store refuses writes (beyond, the
    # oldest are dropped: the relay re-publishes them as no-ops, marks them).
    # An interval of 0 defers nothing: each publish marks its rows at once in a
    # transaction of its own, as before (the baseline of `latency.py --marks both`).
    outbox_mark_interval_seconds: float = Field(default=0.25, ge=0)
    outbox_mark_batch: int = Field(default=1000, ge=1)
    outbox_mark_max_pending: int = Field(default=100_000, ge=1)
    # Published outbox rows are kept this long (for inspection), then the relay
    # deletes them; unpublished rows are never deleted.
    outbox_retention_seconds: float = Field(default=86_400, ge=0)

    # One deadline for each request's store work (placing an order: lock waits, pool
    # acquire, statements, commit, then the publish; reads too). Past it the store
    # abandons the transaction -- rolled back, never committed later -- and the API
    # answers 503 store-unavailable with Retry-After. It must end well before Sanic's
    # response timeout, so that this honest answer, not Sanic's generic 503, is sent.
    store_deadline_seconds: float = Field(default=10.0, gt=0)
    # The workers' (orders, delivery) budget per store operation. No client waits for
    # them, and a failed handler is retried and finally dead-lettered, so they wait
    # out a long lock instead of failing fast.
    worker_store_deadline_seconds: float = Field(default=120.0, gt=0)
    # The most events a service agent takes into one list: the events that have already
    # arrived, handled concurrently across orders (in order within one), what they publish
    # sent in one round trip (docs/system.md, "Handling the events that have arrived
    # together"). 1: one event at a time, as before.
    agent_list_max_events: int = Field(default=100, ge=1)
    # Sanic's RESPONSE_TIMEOUT: the longest a request handler may run before Sanic
    # gives up on it. Must exceed store_deadline_seconds by RESPONSE_MARGIN_SECONDS.
    http_response_timeout_seconds: float = Field(default=60.0, gt=0)

    # Server-Sent Events (docs/realtime.md#server-sent-events). A comment line goes out
    # when a stream has been quiet this long, so proxies keep the connection; it must
    # be below http_response_timeout_seconds (Sanic cuts a response silent that long).
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0)
    # The `retry:` hint sent first on every stream: milliseconds a browser waits
    # before it reconnects on its own.
    sse_retry_ms: int = Field(default=2000, ge=0)
    # Longest wait, in seconds, for one event to be taken by the client; a client that
    # does not read for that long is disconnected (it reconnects and resumes).
    sse_send_timeout_seconds: float = Field(default=30.0, gt=0)
    # Event streams (order tracking and menu) one process keeps open at most; one more
    # is answered 503 with Retry-After before the stream starts.
    sse_max_streams: int = Field(default=10000, ge=1)
    # Shortest time, in seconds, between two menu reads of the stock fan-out (one per
    # process): a burst of orders costs one read per interval, whatever the audience.
    menu_refresh_interval_seconds: float = Field(default=0.25, ge=0)

    # Simulator delays (seconds); 0/0 makes the lifecycle run at full speed.
    simulator_delay_min: float = Field(default=1.0, ge=0)
    simulator_delay_max: float = Field(default=4.0, ge=0)

    # `orderflow demo` restarts a child that exits on its own after a back-off that starts
    # here and doubles with each exit within the window, up to the max; a child exiting
    # more than demo_restart_limit times within the window stops the demo (crash loop).
    demo_restart_first_delay_seconds: float = Field(default=0.5, gt=0)
    demo_restart_max_delay_seconds: float = Field(default=8.0, gt=0)
    demo_restart_limit: int = Field(default=5, ge=0)
    demo_restart_window_seconds: float = Field(default=60.0, gt=0)
    # `orderflow demo`'s worker processes: "paired" (orders + delivery, the store's writers,
    # in one process; simulator + notifications in another), "split" (one per service, as
    # the Helm chart runs them) or "combined" (every service's agents in one process);
    # docs/system.md, "Process layouts".
    demo_layout: Literal["split", "combined", "paired"] = "paired"

    # Notifications cache.
    status_ttl_seconds: int = 86_400

    # Partitions of each per-order topic (orders, deliveries, order and delivery status,
    # the two simulate streams: topics.PARTITIONED_STREAMS), every event placed by its
    # order id (docs/system.md#partitioned-topics). 1 (the default) keeps each topic the
    # one plain stream it has always been: the stream names are part of the data, so a
    # deployment that upgrades keeps reading what is already queued, and on one Redis
    # node (one core) more streams buy little. On a Redis Cluster use at least the number
    # of masters (`orderflow demo --cluster` uses 3): each partition is its own slot, so
    # the topics' work spreads over the shards. Every process must use the same value;
    # changing it strands what is in flight unless drained first (see the docs).
    topic_partitions: int = Field(default=1, ge=1, le=1024)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies_are_addresses(cls, value: str) -> str:
        """A typo here would silently trust nobody (or the wrong block): refuse it."""
        for entry in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"not an IP address or CIDR block: {entry!r}") from None
        return value

    @model_validator(mode="after")
    def _store_deadline_ends_before_the_response_timeout(self) -> Settings:
        """Refuse to start with a store deadline that Sanic's timeout could cut short: the
        client would get a generic 503 while the store might still commit."""
        if (
            self.store_deadline_seconds + RESPONSE_MARGIN_SECONDS
            > self.http_response_timeout_seconds
        ):
            raise ValueError(
                f"ORDERFLOW_STORE_DEADLINE_SECONDS ({self.store_deadline_seconds:g}) must be"
                f" at least {RESPONSE_MARGIN_SECONDS:g} s below"
                f" ORDERFLOW_HTTP_RESPONSE_TIMEOUT_SECONDS ({self.http_response_timeout_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _heartbeat_within_the_response_timeout(self) -> Settings:
        """A heartbeat slower than Sanic's response timeout would let Sanic cut every
        quiet event stream."""
        if self.sse_heartbeat_seconds >= self.http_response_timeout_seconds:
            raise ValueError(
                f"ORDERFLOW_SSE_HEARTBEAT_SECONDS ({self.sse_heartbeat_seconds:g}) must be"
                " below ORDERFLOW_HTTP_RESPONSE_TIMEOUT_SECONDS"
                f" ({self.http_response_timeout_seconds:g})"
            )
        return self

    @model_validator(mode="after")
    def _marks_come_before_the_relay_and_its_markers_outlive_it(self) -> Settings:
        """The relay re-publishes rows still unmarked at its min age: with a min age close
        to the mark interval it would re-publish (as no-ops) nearly every row; and the
        once-only markers that make a re-publish a no-op must outlive the relay's reach."""
        if self.outbox_relay_min_age_seconds < OUTBOX_TIMING_FACTOR * (
            self.outbox_mark_interval_seconds
        ):
            raise ValueError(
                f"ORDERFLOW_OUTBOX_RELAY_MIN_AGE_SECONDS ({self.outbox_relay_min_age_seconds:g})"
                f" must be at least {OUTBOX_TIMING_FACTOR}x"
                f" ORDERFLOW_OUTBOX_MARK_INTERVAL_SECONDS ({self.outbox_mark_interval_seconds:g})"
            )
        reach = self.outbox_relay_min_age_seconds + self.outbox_relay_interval_seconds
        if self.dedupe_ttl_seconds < OUTBOX_TIMING_FACTOR * reach:
            raise ValueError(
                f"ORDERFLOW_DEDUPE_TTL_SECONDS ({self.dedupe_ttl_seconds}) must be at least"
                f" {OUTBOX_TIMING_FACTOR}x the outbox relay's min age plus its interval"
                f" ({reach:g} s): the publish markers must outlive an unmarked row"
            )
        return self


OUTBOX_TIMING_FACTOR = 10
"""The relay's min age spans at least this many mark intervals, and the publish markers'
TTL at least this many of the relay's reach (min age + interval)."""

RESPONSE_MARGIN_SECONDS = 1.0
"""Time left after the store deadline for the answer itself (and a commit already begun)."""


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings are read once per process; tests build ``Settings(...)`` directly."""
    return Settings()
