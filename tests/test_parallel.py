"""The ordered thread map: input order kept across batches, first error stops the rest."""

from __future__ import annotations

import threading

import pytest

from overlearning.core.parallel import ordered_parallel_map


@pytest.mark.parametrize(("threads", "batch"), [(1, 1), (2, 1), (2, 3), (3, 64)])
def test_results_in_input_order(threads: int, batch: int) -> None:
    items = list(range(50))
    out = list(ordered_parallel_map(lambda v: (v, v * v), items, threads, len(items), "t",
                                    batch=batch))
    assert out == [(v, v * v) for v in items]


def test_batches_run_off_the_calling_thread_with_threads() -> None:
    caller = threading.get_ident()
    seen = list(ordered_parallel_map(lambda v: threading.get_ident(), range(10), 2, 10, "t",
                                     batch=4))
    assert caller not in seen
    inline = list(ordered_parallel_map(lambda v: threading.get_ident(), range(3), 1, 3, "t"))
    assert inline == [caller] * 3


def test_first_error_stops_and_cancels_queued_batches() -> None:
    done: list[int] = []
    lock = threading.Lock()

    def work(v: int) -> int:
        if v == 5:
            raise ValueError("item 5")
        with lock:
            done.append(v)
        return v

    results = []
    with pytest.raises(ValueError, match="item 5"):
        for r in ordered_parallel_map(work, range(10_000), 2, 10_000, "t", batch=4):
            results.append(r)
    # Items before the failing one came back in order; most of the queue never ran.
    assert results == [0, 1, 2, 3]
    assert len(done) < 1_000
