"""Micro-batching: requests that arrive together share one model call.

A model answers 64 images in little more time than one, so under load the server gathers the
images of concurrent requests (up to `max_batch`, waiting at most `max_wait` for more once the
first has arrived, unless no other request is on its way) and calls the model once, in a worker
thread so that the event loop keeps accepting and parsing requests meanwhile. While the model
runs, the next batch gathers. At most `max_queue` images may wait; beyond that `submit` raises
QueueFull at once (the server's 503), so an overload costs a fast refusal instead of unbounded
memory and latency.

The model can be replaced while the server runs (`swap`): a batch runs entirely on the model that
was current when it started, and each answer names that model. What follows the model call and is cheaper
per batch than per request (the server's answers: temperature, detector scores, top classes) runs once per
batch too, in the same thread (`finish`).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import torch


class QueueFull(Exception):
    """More images are waiting for the model than the queue holds."""


class Model(Protocol):
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """float32 [N, 10] for uint8 [N, 28, 28]."""
        ...


M = TypeVar("M", bound=Model)


# finish(model, images [B, 28, 28], logits [B, 10], notes [B]) -> one result per image of the batch.
Finish = Callable[[M, torch.Tensor, torch.Tensor, list[Any]], Sequence[Any]]


@dataclass(frozen=True)
class Answer(Generic[M]):
    logits: torch.Tensor  # float32 [k, 10], one row per submitted image
    model: M  # the model that computed them
    waited: float  # seconds from submission to the start of the model call
    results: Sequence[Any] = ()  # what `finish` made of each submitted image (none without a finish)


@dataclass
class _Job(Generic[M]):
    images: torch.Tensor  # uint8 [k, 28, 28]
    notes: list[Any]  # one per image, for `finish`
    done: asyncio.Future[Answer[M]]
    queued_at: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[M]):
    def __init__(
        self,
        model: M,
        max_batch: int = 64,
        max_wait: float = 0.002,
        max_queue: int = 256,
        expected: Callable[[], int] | None = None,
        on_batch: Callable[[int, float], None] | None = None,
        finish: Finish[M] | None = None,
    ):
        """`model.logits` answers each batch. `expected()`: how many more submissions are on their way
        (requests still being read or decoded); when it says none, a batch goes at once instead of waiting
        max_wait for company that is not coming. `on_batch(images, seconds)` is told of every model call.
        `finish(model, images, logits, notes)`: one result per image, made once for the whole batch after
        the model call, from each image's note (`submit`); each Answer carries its images' results."""
        if max_batch < 1 or max_queue < 1 or max_wait < 0:
            raise ValueError(
                f"need max_batch >= 1, max_queue >= 1, max_wait >= 0; got {max_batch}, {max_queue}, {max_wait}"
            )
        self.model = model
        self.max_batch, self.max_wait, self.max_queue = max_batch, max_wait, max_queue
        self.expected, self.on_batch, self.finish = expected, on_batch, finish
        self._jobs: collections.deque[_Job[M]] = collections.deque()
        self._waiting = 0  # images in _jobs
        self._arrived = asyncio.Event()
        # One thread: model calls run one after another, each with all of torch's intra-op threads.
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fmnist-model")
        self._worker: asyncio.Task[None] | None = None
        self.batches = 0  # model calls so far, for /healthz
        self.images = 0

    async def __aenter__(self) -> MicroBatcher:
        self._worker = asyncio.get_running_loop().create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        # The server drains requests before it stops us, so nothing is waiting now; fail any straggler.
        if self._worker is not None:
            self._worker.cancel()
            try:
                await self._worker
            except asyncio.CancelledError:
                pass
        for job in self._jobs:
            if not job.done.done():
                job.done.set_exception(RuntimeError("server shutting down"))
        self._executor.shutdown(wait=True)

    @property
    def waiting(self) -> int:
        return self._waiting

    def swap(self, model: M) -> None:
        """Answer with `model` from the next batch on (the batch in progress finishes on the old one)."""
        self.model = model

    async def submit(self, images: torch.Tensor, notes: Sequence[Any] | None = None) -> Answer[M]:
        """Logits float32 [k, 10] for uint8 images [k, 28, 28], computed in some batch, and what `finish` made
        of each image and its note (`notes`: one per image, None each when not given)."""
        if self._worker is None or self._worker.done():
            raise RuntimeError("MicroBatcher used outside `async with`")
        if len(images) > self.max_batch:
            raise ValueError(f"{len(images)} images in one request; at most max_batch={self.max_batch}")
        if self._waiting + len(images) > self.max_queue:
            raise QueueFull(f"{self._waiting} images are already waiting (queue bound {self.max_queue})")
        notes = [None] * len(images) if notes is None else list(notes)
        job: _Job[M] = _Job(images, notes, asyncio.get_running_loop().create_future())
        self._jobs.append(job)
        self._waiting += len(images)
        self._arrived.set()
        return await job.done

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._arrived.wait()
            batch = await self._gather(loop)
            if not batch:
                continue
            images = torch.cat([job.images for job in batch])
            notes = [note for job in batch for note in job.notes]
            model, started = self.model, time.perf_counter()
            try:
                logits, results = await loop.run_in_executor(self._executor, self._call, model, images, notes)
            except Exception as exc:  # the model's failure is every waiting request's 500, not the worker's end
                for job in batch:
                    if not job.done.done():
                        job.done.set_exception(exc)
                continue
            self.batches += 1
            self.images += len(images)
            if self.on_batch is not None:
                self.on_batch(len(images), time.perf_counter() - started)
            start = 0
            for job in batch:
                end = start + len(job.images)
                if not job.done.done():  # a client that hung up cancelled its future
                    job.done.set_result(Answer(logits[start:end], model, started - job.queued_at, results[start:end]))
                start = end

    def _call(self, model: M, images: torch.Tensor, notes: list[Any]) -> tuple[torch.Tensor, Sequence[Any]]:
        """The model call and `finish` of one batch (in the model's thread)."""
        logits = model.logits(images)
        return logits, self.finish(model, images, logits, notes) if self.finish is not None else ()

    async def _gather(self, loop: asyncio.AbstractEventLoop) -> list[_Job[M]]:
        """Take jobs until max_batch images or max_wait after the first; a job never splits across batches."""
        deadline = loop.time() + self.max_wait
        batch: list[_Job[M]] = []
        count = 0
        while True:
            while self._jobs and count + len(self._jobs[0].images) <= self.max_batch:
                job = self._jobs.popleft()
                self._waiting -= len(job.images)
                batch.append(job)
                count += len(job.images)
            if not self._jobs:
                self._arrived.clear()
            remaining = deadline - loop.time()
            if count >= self.max_batch or self._jobs or remaining <= 0:
                return batch
            if self.expected is not None and self.expected() == 0:
                return batch
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return batch
