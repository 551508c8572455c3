"""The one timing rule of the bench scripts: the best of `repeats` runs after one warm-up run."""

from __future__ import annotations

import time
from collections.abc import Callable


def best_ms(run: Callable[[], object], repeats: int) -> float:
    run()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1e3
