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


def ordered_parallel_map(function: Callable[[T], R], items: Iterable[T], threads: int,
                         total: int, desc: str) -> Iterator[R]:
    """``map`` in ``threads`` threads, results in input order, with a tqdm bar on stderr.

    On the first error the queued work is cancelled (a plain ``with`` block would finish
    every queued item before re-raising). Image decoding, encoding and numpy release the
    GIL, so threads overlap the heavy part of the work. At most a few items per thread
    are ahead of the consumer, so results (encoded crops) never pile up in memory.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    ahead = 4 * max(1, threads)
    try:
        pending_items = iter(items)
        futures: deque[Future[R]] = deque(pool.submit(function, item)
                                          for item in islice(pending_items, ahead))
        with tqdm(total=total, desc=desc, unit="img", mininterval=2.0) as bar:
            while futures:
                result = futures.popleft().result()
                for item in islice(pending_items, 1):
                    futures.append(pool.submit(function, item))
                bar.update(1)
                yield result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
