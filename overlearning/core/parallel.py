"""A thread pool that keeps input order, shows progress and stops at the first error."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def _batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def ordered_parallel_map(function: Callable[[T], R], items: Iterable[T], threads: int,
                         total: int, desc: str, batch: int = 1) -> Iterator[R]:
    """``map`` in ``threads`` threads, results in input order, with a tqdm bar on stderr.

    On the first error the queued work is cancelled (a plain ``with`` block would finish
    every queued item before re-raising). Image decoding, encoding and numpy release the
    GIL, so threads overlap the heavy part of the work. At most a few batches per thread
    are ahead of the consumer, so results (encoded crops) never pile up in memory.

    ``batch`` items go to a thread at a time: each hand-over between threads costs a wake-up,
    which on a loaded machine waits for a time slice, so small items are worth batching.
    With one thread the items are mapped in the calling thread (nothing to overlap).
    """
    with tqdm(total=total, desc=desc, unit="img", mininterval=2.0) as bar:
        if threads <= 1:
            for item in items:
                result = function(item)
                bar.update(1)
                yield result
            return
        pool = ThreadPoolExecutor(max_workers=threads)
        ahead = 4 * threads
        try:
            pending = _batches(items, max(1, batch))
            futures: deque[Future[list[R]]] = deque(
                pool.submit(_map_batch, function, chunk) for chunk in islice(pending, ahead))
            while futures:
                results = futures.popleft().result()
                for chunk in islice(pending, 1):
                    futures.append(pool.submit(_map_batch, function, chunk))
                bar.update(len(results))
                yield from results
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def _map_batch(function: Callable[[T], R], chunk: list[T]) -> list[R]:
    return [function(item) for item in chunk]
