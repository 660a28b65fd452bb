"""The bound of ``Store.recent_orders`` (the operator console's list), shared by every adapter."""

from __future__ import annotations

MAX_RECENT_ORDERS = 200
"""The most ``recent_orders`` returns at once: each order is a full document."""


def check_recent_limit(limit: int) -> None:
    """Refuse a ``recent_orders`` limit outside 1..MAX_RECENT_ORDERS (every adapter)."""
    if not 1 <= limit <= MAX_RECENT_ORDERS:
        raise ValueError(f"limit must be 1 to {MAX_RECENT_ORDERS}, got {limit}")
