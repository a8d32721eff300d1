"""Object ids: a type prefix plus a 26-character ULID (time-sortable, so id order = creation order)."""

from __future__ import annotations

import os
import threading
import time

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
_RANDOM_BITS = 80


def _encode(value: int, length: int) -> str:
    chars = []
    for _ in range(length):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class _UlidClock:
    """48-bit milliseconds + 80 random bits; within one millisecond the random part counts up,
    so the ids one process makes are strictly increasing."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next(self) -> str:
        with self._lock:
            now_ms = time.time_ns() // 1_000_000
            if now_ms <= self._last_ms:
                now_ms = self._last_ms
                self._last_random += 1
            else:
                self._last_ms = now_ms
                self._last_random = int.from_bytes(os.urandom(10), "big") >> 1  # headroom to count up
            return _encode((now_ms << _RANDOM_BITS) | self._last_random, 26)


_clock = _UlidClock()


def new_ulid() -> str:
    return _clock.next()


def new_id(prefix: str) -> str:
    """E.g. new_id("job") -> "job_01JDX..."."""
    return f"{prefix}_{_clock.next()}"
