"""TokenBuckets: bounded per-key token buckets with least-recently-used eviction.

Theory of operation
-------------------
A token bucket holds up to ``burst`` tokens and refills at ``rate`` tokens per
second; an action that takes a token is allowed, one that finds the bucket
empty is not. Refilling is lazy: a bucket is brought up to date only when its
key is seen again, from the time passed since, so nothing runs by time alone.

Keys are untrusted (source IPs and subnets of datagrams), so the number of
buckets is bounded: beyond ``max_buckets`` the least recently used bucket is
dropped (counted in ``evicted``). A dropped key comes back with a full
bucket, which is why the STUN responder keeps a bucket per IP, one per
subnet and a global one: cycling through more addresses than there are
buckets still meets the subnet and global limits.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

__all__ = ["TokenBuckets"]

_K = TypeVar("_K", bound=Hashable)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class TokenBuckets(Generic[_K]):
    """Token buckets keyed by ``_K``, at most ``max_buckets`` of them (LRU)."""

    def __init__(self, *, rate: float, burst: int, max_buckets: int) -> None:
        if not rate > 0 or burst < 1 or max_buckets < 1:
            raise ValueError("rate must be > 0, burst and max_buckets >= 1")
        self._rate = rate
        self._burst = burst
        self._max = max_buckets
        self._buckets: OrderedDict[_K, _Bucket] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._buckets)

    def peek(self, key: _K, now: float) -> bool:
        """Whether ``key`` has a token now (refills, takes nothing)."""
        return self._refill(key, now).tokens >= 1.0

    def take(self, key: _K, now: float) -> bool:
        """Take one token for ``key``; False (nothing taken) when its bucket is empty."""
        bucket = self._refill(key, now)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def _refill(self, key: _K, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(float(self._burst), now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
                self.evicted += 1
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.updated)  # a clock that steps back refills nothing
            bucket.tokens = min(float(self._burst), bucket.tokens + elapsed * self._rate)
            bucket.updated = max(bucket.updated, now)
        return bucket
