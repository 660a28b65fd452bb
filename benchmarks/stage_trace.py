"""The traces of ``latency.py``: per hop (from the streams) and per stage (from metrics).

:func:`hop_breakdown` says how long each hop of the choreography took, from the stream
entry ids. The stage table says what the processes spent inside: every process of
the stack serves Prometheus ``/metrics`` (the API on its port, each worker on its admin
port: ``Stack.metrics_urls``), and every ``orderflow_*`` histogram there is a stage --
``orderflow_handler_seconds{agent}`` (an agent's whole handling of one event),
``orderflow_outbox_publish_seconds`` (the Redis publish of an outbox batch),
``orderflow_outbox_mark_seconds`` (a deferred-marks flush), the HTTP latency, and
whatever histogram another module adds later (the store's commit and group size, say):
the table is built from what the scrape finds, so a new histogram shows up without a
change here.

Each process is scraped before and after the measured orders; a histogram whose count
grew becomes a row: the process, the metric and its labels, the count, the mean, and
p50/p99 estimated from the buckets the way PromQL's ``histogram_quantile`` does
(linear within the bucket that holds the rank: an estimate, as coarse as the buckets).
``*_seconds`` histograms are shown in milliseconds, others (sizes) as they are.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.stack import percentile
from orderflow.agents.topics import ALL_STREAMS, DEAD_LETTERS_STREAM

PREFIX = "orderflow_"
SCRAPE_ROUTE = 'route="/metrics"'
"""The scrapes' own requests to the API: not a stage of the orders, left out."""
AGENT_PATH = re.compile(r'agent="(?:[^"]*\.)?([^".]+)"')
SHORT_AGENT = r'agent="\1"'


@dataclass(frozen=True)
class HistogramState:
    """One histogram series at one scrape: its count, sum and cumulative buckets."""

    count: float
    total: float
    buckets: tuple[tuple[float, float], ...]  # (upper bound, cumulative count), ascending

    def minus(self, earlier: HistogramState | None) -> HistogramState:
        """What was observed since ``earlier`` (the same series at an earlier scrape)."""
        if earlier is None:
            return self
        before = dict(earlier.buckets)
        buckets = tuple((bound, n - before.get(bound, 0.0)) for bound, n in self.buckets)
        return HistogramState(self.count - earlier.count, self.total - earlier.total, buckets)

    def quantile(self, q: float) -> float:
        """The ``q`` quantile estimated from the buckets (``histogram_quantile``'s rule)."""
        if self.count <= 0:
            return math.nan
        rank = q * self.count
        lower, below = 0.0, 0.0
        for bound, cumulative in self.buckets:
            if cumulative >= rank:
                if math.isinf(bound):
                    return lower  # beyond the last finite bucket: its bound is all we know
                inside = cumulative - below
                return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
            lower, below = bound, cumulative
        return lower


Series = tuple[str, str]  # (metric name, its labels as name="value",...)


def parse_histograms(text: str) -> dict[Series, HistogramState]:
    """Every ``orderflow_*`` histogram series in a Prometheus text exposition."""
    found: dict[Series, dict[str, Any]] = {}
    for family in text_string_to_metric_families(text):
        if family.type != "histogram" or not family.name.startswith(PREFIX):
            continue
        for sample in family.samples:
            labels = {k: v for k, v in sample.labels.items() if k != "le"}
            shown = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            series = found.setdefault((family.name, shown), {"buckets": []})
            if sample.name.endswith("_bucket"):
                series["buckets"].append((float(sample.labels["le"]), float(sample.value)))
            elif sample.name.endswith("_count"):
                series["count"] = float(sample.value)
            elif sample.name.endswith("_sum"):
                series["sum"] = float(sample.value)
    return {
        key: HistogramState(
            parts.get("count", 0.0), parts.get("sum", 0.0), tuple(sorted(parts["buckets"]))
        )
        for key, parts in found.items()
    }


Scrape = dict[str, dict[Series, HistogramState]]  # process name -> its histograms


async def scrape(urls: Mapping[str, str]) -> Scrape:
    """Every process's histograms, scraped at once; a process that does not answer has
    none (its rows are missing from the table, never invented)."""
    async with httpx.AsyncClient(timeout=10.0) as client:

        async def one(url: str) -> dict[Series, HistogramState]:
            try:
                response = await client.get(url)
                response.raise_for_status()
            except httpx.HTTPError:
                return {}
            return parse_histograms(response.text)

        results = await asyncio.gather(*(one(url) for url in urls.values()))
    return dict(zip(urls, results, strict=True))


def stage_rows(before: Scrape, after: Scrape) -> list[dict[str, Any]]:
    """A row per (process, histogram series) whose count grew between the scrapes."""
    rows: list[dict[str, Any]] = []
    for process, series in after.items():
        for (name, labels), state in sorted(series.items()):
            grown = state.minus(before.get(process, {}).get((name, labels)))
            if grown.count <= 0 or SCRAPE_ROUTE in labels:
                continue
            scale, unit = (1000.0, "ms") if name.endswith("_seconds") else (1.0, "")
            rows.append(
                {
                    "process": process,
                    "metric": name,
                    "labels": labels,
                    "count": int(grown.count),
                    "unit": unit,
                    "mean": round(grown.total / grown.count * scale, 3),
                    "p50": round(grown.quantile(0.5) * scale, 3),
                    "p99": round(grown.quantile(0.99) * scale, 3),
                }
            )
    return rows


def stage_name(metric: str, labels: str) -> str:
    """``handler_seconds{agent="persist_order_status"}``: short enough for a table."""
    shown = AGENT_PATH.sub(SHORT_AGENT, labels)
    return metric.removeprefix(PREFIX) + (f"{{{shown}}}" if shown else "")


def print_stages(title: str, rows: Sequence[dict[str, Any]]) -> None:
    """The per-stage table on stdout (p50/p99 are bucket estimates; an agent is shown by
    its function's name, the JSON keeps the full label)."""
    print(f"{title}: per process and stage (count, mean, p50/p99 from the buckets)")
    if not rows:
        print("  (no histogram grew)")
        return
    stages = [stage_name(row["metric"], row["labels"]) for row in rows]
    process_width = max(len(row["process"]) for row in rows)
    stage_width = max(len(stage) for stage in stages)
    print(f"  {'process':<{process_width}} {'stage':<{stage_width}} {'count':>7}"
          f" {'mean':>9} {'p50':>9} {'p99':>9}")  # fmt: skip
    for row, stage in zip(rows, stages, strict=True):
        print(
            f"  {row['process']:<{process_width}} {stage:<{stage_width}} {row['count']:>7}"
            f" {row['mean']:>9.3f} {row['p50']:>9.3f} {row['p99']:>9.3f} {row['unit']}"
        )


TRACED_STREAMS = tuple(stream for stream in ALL_STREAMS if stream != DEAD_LETTERS_STREAM)


async def hop_breakdown(redis_url: str, since_id: str) -> list[tuple[str, float, float, int]]:
    """Per-hop latency of the choreography, from the streams themselves.

    Every envelope names the event that caused it (``causation_id``), and every
    stream entry id starts with the server's millisecond clock, so each
    (cause -> effect) pair of entries gives one hop: consume + handle + store +
    publish in the service in between. Millisecond resolution; one clock.
    Returns (hop, p50_ms, p99_ms, count), slowest first.
    """
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    entries: dict[str, tuple[int, str, str | None]] = {}  # event_id -> (ms, label, cause)
    try:
        for stream in TRACED_STREAMS:
            raw: Any = await client.xrange(stream, min=since_id, max="+")
            for entry_id, fields in raw:
                payload = json.loads(fields.get("payload") or "{}")
                label = f"{fields.get('event_type', '?')}[{payload.get('status', '')}]"
                millis = int(entry_id.split("-")[0])
                entries[fields.get("event_id", entry_id)] = (
                    millis,
                    label,
                    fields.get("causation_id") or None,
                )
    finally:
        await client.aclose()
    hops: dict[str, list[float]] = {}
    for millis, label, cause in entries.values():
        if cause and cause in entries:
            cause_ms, cause_label, _ = entries[cause]
            hops.setdefault(f"{cause_label} -> {label}", []).append(float(millis - cause_ms))
    rows = [
        (hop, percentile(values, 50), percentile(values, 99), len(values))
        for hop, values in hops.items()
    ]
    return sorted(rows, key=lambda row: -row[1])


def busy_shares(before: Scrape, after: Scrape, metric: str, elapsed: float) -> dict[str, float]:
    """Per process, how much of ``elapsed`` wall seconds ``metric`` (a ``*_seconds``
    histogram, every series of it summed) accounted for between the scrapes, and
    ``total`` over the processes: ``orderflow_store_commit_seconds`` spans ``BEGIN`` to
    ``COMMIT``, and SQLite lets one writer in at a time, so for SQLite the total is the
    share of the time the file's write lock was held (1.0: never free)."""
    shares: dict[str, float] = {}
    for process, series in after.items():
        grown = sum(
            state.minus(before.get(process, {}).get(key)).total
            for key, state in series.items()
            if key[0] == metric
        )
        if grown > 0:
            shares[process] = round(grown / elapsed, 3)
    shares["total"] = round(sum(shares.values()), 3)
    return shares
