"""Terminal progress lines for long steps: shown on a TTY, silent when piped or --quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


class ProgressLine:
    """Rewrites one stderr line in place; a no-op when stderr is not a terminal or quiet."""

    def __init__(self, label: str, quiet: bool = False) -> None:
        self._label = label
        self._enabled = not quiet and sys.stderr.isatty()
        self._last = 0.0

    @property
    def enabled(self) -> bool:
        return self._enabled

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not self._enabled or (not force and now - self._last < 0.1):
            return
        self._last = now
        sys.stderr.write(f"\r\x1b[2K{self._label}: {text}")
        sys.stderr.flush()

    def done(self) -> None:
        if self._enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()

    def counter(self) -> Callable[[int, int], None]:
        """A ``(done, total)`` callback drawing a bar."""

        def update(done: int, total: int) -> None:
            width = 30
            filled = int(width * done / total) if total else width
            self.show(f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", done == total)

        return update

    def solver(self) -> Callable[[float, float], None]:
        """A ``(best objective, bound)`` callback for the CP-SAT search."""

        def update(objective: float, bound: float) -> None:
            gap = (objective - bound) / objective if objective > 0 else 0.0
            self.show(f"best {objective * 1e3:.3f} ms, bound {bound * 1e3:.3f} ms, gap {gap:.1%}")

        return update
