"""A bounded, order-free parallel map over a local process pool, in-process when workers == 1."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from curata.console import guard_library_output

T = TypeVar("T")
R = TypeVar("R")


def default_workers(requested: int | None = None) -> int:
    """``requested`` if positive, else the cores this process may use."""
    if requested and requested > 0:
        return requested
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def die_with_parent(parent: int | None = None) -> None:
    """In a worker: be killed when the parent process dies (Linux ``PR_SET_PDEATHSIG``).

    A pool worker must not keep de-identifying and writing after the ingest that started it was
    killed. Where prctl is missing this is a no-op (the pool's own pipes end the worker later)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def start_worker(parent: int, initializer: Callable[..., Any] | None, initargs: tuple[Any, ...]) -> None:
    die_with_parent(parent)
    guard_library_output()  # a worker reads the inputs: the parsers' warnings quote them
    if initializer is not None:
        initializer(*initargs)


def imap_unordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    *,
    workers: int | None = None,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] = (),
    window: int | None = None,
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` as results complete, keeping at most ``window`` items in flight.

    ``fn`` must not raise for per-item failures: it returns them, so one bad item never stops the batch.
    With one worker everything runs in this process (no pickling), which tests and the gateway use.
    """
    n = default_workers(workers)
    if n == 1:
        if initializer is not None:
            initializer(*initargs)
        for item in items:
            yield item, fn(item)
        return
    window = window or n * 4
    with ProcessPoolExecutor(
        max_workers=n, initializer=start_worker, initargs=(os.getpid(), initializer, initargs)
    ) as pool:
        pending: dict[Future[R], T] = {}
        iterator = iter(items)
        exhausted = False
        while True:
            while not exhausted and len(pending) < window:
                try:
                    item = next(iterator)
                except StopIteration:
                    exhausted = True
                    break
                pending[pool.submit(fn, item)] = item
            if not pending:
                return
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                item = pending.pop(fut)
                yield item, fut.result()
