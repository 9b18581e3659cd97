"""What one `fmnist serve` worker process accepts and how it batches: `Limits`, checked when it is made."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from fmnist.data import CLASSES
from fmnist.errors import FmnistError

MIB = 2**20


def _limit(default: float, help: str, least: float = 1, above: bool = False) -> Any:
    """A Limits field: its `fmnist serve` flag's help, and its lowest allowed value (`above`: strictly above)."""
    return field(default=default, metadata={"help": help, "least": least, "above": above})


@dataclass(frozen=True)
class Limits:
    """What one server (one worker process) accepts and how it batches; each field is an `fmnist serve` flag.

    Raises FmnistError naming the first value out of range (its flag name) when made, as Config does."""

    max_batch: int = _limit(64, "images per model call")
    max_wait_ms: float = _limit(2.0, "how long a batch waits for more images once one arrived", least=0)
    max_queue: int = _limit(256, "requests in progress, and images waiting for the model, before answering 503")
    decoders: int = _limit(2, "threads decoding uploaded images (each may hold a large decoded photo)")
    max_body_mb: float = _limit(10.0, "largest request body, MiB", least=0, above=True)
    max_buffered_mb: float = _limit(
        128.0, "request bodies held in memory by all requests together, MiB; beyond: 503", least=0, above=True
    )
    max_files: int = _limit(16, "images in one multipart request")
    body_timeout: float = _limit(
        30.0,
        "seconds a request body may go without sending a byte; then 408 and its place is freed",
        least=0,
        above=True,
    )
    top_k: int = _limit(5, "classes listed per prediction")
    rate: float = _limit(
        0.0,
        "POST /predict requests per second per client (API key, else IP address), token bucket; 0: no limit",
        least=0,
    )
    burst: int = _limit(20, "requests a client may send at once before --rate applies")

    def __post_init__(self) -> None:
        for f in fields(self):
            value, least = getattr(self, f.name), f.metadata["least"]
            if not value >= least or (f.metadata["above"] and not value > least):  # NaN is refused too
                bound = f"> {least:g}" if f.metadata["above"] else f">= {least:g}"
                raise FmnistError(f"{f.name.replace('_', '-')} must be {bound}, got {value}")
        if self.max_body > self.max_buffered:
            raise FmnistError(
                f"max-body-mb ({self.max_body_mb:g}) cannot exceed max-buffered-mb ({self.max_buffered_mb:g})"
            )
        if self.max_files > self.max_batch:
            raise FmnistError(f"max-files ({self.max_files}) cannot exceed max-batch ({self.max_batch})")
        if self.top_k > len(CLASSES):
            raise FmnistError(f"top-k must be at most {len(CLASSES)}, got {self.top_k}")

    @property
    def max_body(self) -> int:
        """Bytes of one request body."""
        return max(1, round(self.max_body_mb * MIB))

    @property
    def max_buffered(self) -> int:
        """Bytes of request bodies in memory at once, all requests together."""
        return max(1, round(self.max_buffered_mb * MIB))
