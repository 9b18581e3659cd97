"""Who may call the API: API keys (`--api-key-file`) and a per-client rate limit (token bucket).

Keys: one per line in a file (blank lines and lines starting with # ignored), sent as
`Authorization: Bearer KEY` or `X-API-Key: KEY`, compared with `hmac.compare_digest` against every
key so that the time taken says nothing about how much of a key matched. A refusal is 401 with the
same message whether the key was missing, malformed or wrong.

Rate limit: each client (its key when keys are in use, else its IP address) has a bucket of `burst`
tokens refilled at `rate` per second; a request takes one, and an empty bucket is 429 with
`Retry-After` (whole seconds until a token is back). The buckets live in one process: with
`--workers N` each worker keeps its own, so a client may get up to N times the rate.
"""

from __future__ import annotations

import hmac
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

from fmnist import textfile
from fmnist.errors import FmnistError
from fmnist.serve.http import ApiError

MAX_CLIENTS = 100_000  # buckets remembered; the least recently seen are forgotten beyond this (bounded memory)


def read_keys(path: str | Path) -> tuple[str, ...]:
    """The keys in `path`, one per line, read by textfile.lines (any BOM or line end; surrounding spaces,
    blank lines and # comments left out); FmnistError if the file is unreadable or holds none."""
    keys = tuple(textfile.lines(path, "API key file"))
    if not keys:
        raise FmnistError(f"{path}: no API keys in it (one key per line)")
    if any(len(key) < 16 or any(c.isspace() for c in key) for key in keys):
        raise FmnistError(f"{path}: each key must be at least 16 characters with no spaces")
    return keys


def presented_key(headers: Mapping[str, str]) -> str:
    """The key a request carries (`Authorization: Bearer KEY`, else `X-API-Key`), or ""."""
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return headers.get("x-api-key", "").strip()


class Keys:
    def __init__(self, keys: tuple[str, ...]):
        self.keys = [key.encode() for key in keys]

    def check(self, headers: Mapping[str, str]) -> str:
        """The key if it is one of ours, else ApiError 401 (one message for every way of failing)."""
        given = presented_key(headers).encode()
        matched = False
        for key in self.keys:  # all compared, so the time does not depend on which one matched
            matched |= hmac.compare_digest(given, key)
        if not matched:
            raise ApiError(
                401,
                "missing or invalid API key (send Authorization: Bearer KEY or X-API-Key: KEY)",
                {"WWW-Authenticate": "Bearer"},
            )
        return given.decode()


class RateLimiter:
    """Token buckets per client: `rate` requests per second on average, up to `burst` at once."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic):
        if rate <= 0 or burst < 1:
            raise ValueError(f"need rate > 0 and burst >= 1, got {rate}, {burst}")
        self.rate, self.burst, self.clock = rate, burst, clock
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at time)

    def take(self, client: str) -> None:
        """Take a token for `client`, or raise ApiError 429 with Retry-After."""
        now = self.clock()
        tokens, then = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            wait = math.ceil((1 - tokens) / self.rate)
            raise ApiError(
                429,
                f"rate limit: at most {self.rate:g} requests/s ({self.burst} at once) per client; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        self.buckets[client] = (tokens - 1, now)
        if len(self.buckets) > MAX_CLIENTS:
            self.buckets.popitem(last=False)
