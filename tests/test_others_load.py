"""``OthersLoad``: the CPU share other processes take while a figure is timed, which decides
whether compile-time plan timings and node profiles are cached
(``profiling.timing.CACHE_OTHERS_SHARE``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from partitioner.profiling.timing import OthersLoad


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux)")
def test_a_busy_process_beside_the_timing_is_seen_and_our_own_work_is_not() -> None:
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start spinning
        with OthersLoad() as loaded:
            end = time.perf_counter() + 1.0
            while time.perf_counter() < end:  # our own work does not count
                pass
    finally:
        busy.kill()
        busy.wait()
    assert loaded.share is not None
    # One spinning process holds one core for the whole block: 1 / cores of the machine.
    assert loaded.share >= 0.5 / (os.cpu_count() or 1)
