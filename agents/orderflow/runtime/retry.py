"""Exponential back-off with a cap and jitter, and the max-deliveries rule.

The attempt number is Redis's own delivery count for the entry (XPENDING
``times_delivered``), never a counter of ours: it survives restarts and is the
same number every consumer of the group sees.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    base: float = 0.5
    cap: float = 30.0
    max_deliveries: int = 5
    jitter: float = 0.2  # fraction of the delay that is randomised (spreads retry storms)

    def delay(self, delivery_count: int) -> float:
        """Seconds to wait before delivery ``delivery_count + 1``."""
        exponent = max(0, delivery_count - 1)
        raw = self.cap if exponent >= 63 else min(self.cap, self.base * (2**exponent))
        return raw * (1.0 - self.jitter * random.random())

    def exhausted(self, delivery_count: int) -> bool:
        """True when the entry has had its last allowed delivery."""
        return delivery_count >= self.max_deliveries


def reconnect_delays(base: float = 0.1, cap: float = 5.0) -> RetryPolicy:
    """Back-off used while the server is unreachable (no busy loop, capped)."""
    return RetryPolicy(base=base, cap=cap, max_deliveries=1_000_000_000, jitter=0.3)
