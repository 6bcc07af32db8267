"""A per-caller rate limit for the API: a token bucket per token (or per address).

A runaway integration or a guessing attack gets ``429 Too Many Requests`` with a
``Retry-After`` header instead of the store's capacity. The key is a hash of the
``Authorization`` header, so buckets never hold a token itself.

>>> limiter = RateLimiter(rate=1.0, burst=2)
>>> [limiter.allow("k", now=0.0) for _ in range(3)]
[0.0, 0.0, 1.0]
>>> limiter.allow("k", now=1.0)
0.0
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field

#: Most buckets kept; the least recently used are forgotten beyond it.
MAX_BUCKETS = 10_000


@dataclass
class RateLimiter:
    """Token buckets: ``rate`` requests per second on average, ``burst`` at once."""

    rate: float = 50.0
    burst: int = 500
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def allow(self, key: str, *, now: float) -> float:
        """0 when the request may go ahead, else the seconds to wait before retrying."""
        with self._lock:
            tokens, last = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0
            else:
                wait = (1.0 - tokens) / self.rate
            self._buckets[key] = (tokens, now)
            if len(self._buckets) > MAX_BUCKETS:
                del self._buckets[next(iter(self._buckets))]
            return wait


def caller_key(authorization: str | None, address: str | None) -> str:
    """Who a request counts against: its credentials if any, else its address."""
    if authorization:
        return "auth:" + hashlib.sha256(authorization.encode()).hexdigest()[:32]
    return f"addr:{address or 'unknown'}"
