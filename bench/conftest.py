"""Shared pytest-benchmark reporting for bench/: speed-ups against a baseline and free-form notes.

In every benchmark group that has a test parametrized with impl="reference", the terminal summary lists the
ratio median(reference) / median(other impl). Tests can add lines with the `bench_note` fixture.
"""

from __future__ import annotations

import pytest

_NOTES = pytest.StashKey[list]()


@pytest.fixture
def bench_note(request):
    """Call with a string to print it in the terminal summary (captured output is not shown for passing tests)."""
    notes = request.config.stash.setdefault(_NOTES, [])
    return notes.append


def pytest_terminal_summary(terminalreporter, config) -> None:
    session = getattr(config, "_benchmarksession", None)
    benchmarks = [b for b in getattr(session, "benchmarks", []) if b.stats is not None and "impl" in (b.params or {})]
    baselines = {b.group: b.stats.median for b in benchmarks if b.params["impl"] == "reference"}
    rows = [b for b in benchmarks if b.group in baselines and b.params["impl"] != "reference"]
    if rows:
        terminalreporter.write_sep("-", "speed-up vs impl=reference (median / median)")
        for bench in sorted(rows, key=lambda b: (b.group, b.params["impl"])):
            ratio = baselines[bench.group] / bench.stats.median
            terminalreporter.write_line(
                f"{bench.group:34s} {bench.params['impl']:14s} {bench.stats.median * 1e6:11.1f} us  {ratio:5.2f}x"
            )
    for note in config.stash.get(_NOTES, []):
        terminalreporter.write_line(note)
