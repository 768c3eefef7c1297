"""A thread pool that keeps input order, shows progress and stops at the first error."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def ordered_parallel_map(function: Callable[[T], R], items: Iterable[T], threads: int,
                         total: int, desc: str) -> Iterator[R]:
    """``map`` in ``threads`` threads, results in input order, with a tqdm bar on stderr.

    On the first error the queued work is cancelled (a plain ``with`` block would finish
    every queued item before re-raising). Image decoding, encoding and numpy release the
    GIL, so threads overlap the heavy part of the work.
    """
    pool = ThreadPoolExecutor(max_workers=max(1, threads))
    try:
        futures = [pool.submit(function, item) for item in items]
        for future in tqdm(futures, total=total, desc=desc, unit="img", mininterval=2.0):
            yield future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
