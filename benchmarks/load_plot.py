"""``load.py --plot``: the load curve as a PNG (matplotlib, imported only when asked for).

Three panels against the offered rate: the latency percentiles (log scale), the
achieved rate with the knee, and the share of each step's window the store spent
between ``BEGIN`` and ``COMMIT`` (``store_commit_share``; with SQLite the file's one
write lock, so 1.0 means it was never free: where it nears 1, the knee is near).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.stack import log

LATENCIES = (
    ("post_p50_ms", "POST p50"),
    ("post_p99_ms", "POST p99"),
    ("first_update_p99_ms", "first update p99"),
    ("delivered_p99_ms", "delivered p99"),
)


def plot(result: dict[str, Any], path: Path) -> None:
    """Write ``result``'s curve (``load.py``'s JSON object) to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = result["steps"]
    offered = [s["offered_per_s"] for s in steps]
    fig, (lat, rate, store) = plt.subplots(1, 3, figsize=(15, 4.2))
    for key, label in LATENCIES:
        points = [(o, s[key]) for o, s in zip(offered, steps, strict=True) if s[key]]
        lat.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    lat.axhline(1000, color="grey", linestyle=":", label="knee limit (1 s)")
    lat.set(xlabel="offered orders/s", ylabel="ms", yscale="log", title="latency")
    lat.legend(fontsize=8)
    rate.plot(offered, [s["achieved_per_s"] for s in steps], marker="o", label="achieved")
    rate.plot(offered, offered, linestyle="--", color="grey", label="offered")
    if result["knee_orders_per_s"] is not None:
        rate.axvline(result["knee_orders_per_s"], color="red", linestyle=":", label="knee")
    rate.set(xlabel="offered orders/s", ylabel="delivered orders/s", title="throughput")
    rate.legend(fontsize=8)
    for key, label in (
        ("store_commit_share", "in a transaction (BEGIN to COMMIT)"),
        ("store_lock_wait_share", "writers waiting for another process's turn"),
    ):
        shares = [s.get(key, {}).get("total") for s in steps]
        points = [(o, v) for o, v in zip(offered, shares, strict=True) if v is not None]
        store.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    store.set(xlabel="offered orders/s", ylabel="seconds per second", ylim=(0, None),
              title=f"store ({result.get('store', 'sqlite')}), all processes")  # fmt: skip
    store.legend(fontsize=8)
    load = result["load_average_at_start"][0]
    fig.suptitle(f"orderflow load curve, {result.get('layout', '?')} layout "
                 f"(load average {load} at start)")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    log(f"plot written to {path}")
