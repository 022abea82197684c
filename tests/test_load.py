"""`benchmarks/load.py` at CI scale: a herd of shallow clones and ls-remote clicks against a
real `f2git serve`, in rounds. Every request succeeds, and nothing leaks between rounds: no
git process outlives its request and the server's open file descriptors do not grow.
(The timing figures are for `make bench`; nothing here asserts a time.)"""
from __future__ import annotations

from benchmarks.load import measure


def test_a_herd_of_clones_and_clicks_all_succeed_and_leak_nothing(tmp_path):
    # refresh_ttl = 0: every click also refreshes the course, so the sync path is under load too.
    figures = measure(tmp_path, mib=2, files=40, clones=20, clicks=100, rounds=3, concurrency=10, sequential=3,
                      refresh_ttl=0)
    assert figures.failures == []
    assert sum(herd.count for herd in figures.clones) == 60 and sum(herd.count for herd in figures.clicks) == 300
    assert figures.leftover_processes == [0, 0, 0]
    # fds after the warm-up and after each round: a leak of one per request would add hundreds.
    assert max(figures.fds) - min(figures.fds) <= 2, figures.fds
    # The same for memory, loosely (allocator noise): a leak of a pack per clone would add 100 MiB.
    assert figures.rss[-1] < figures.rss[1] + 30 * 1024 * 1024, figures.rss
