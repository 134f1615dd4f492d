"""How far a long command is: the one progress helper of every tool (``matrix``, ``mutants``,
``calibrate``, ``bench``).

A tool knows its jobs up front (the matrix's backend × variant × dtype checks, the mutant runs,
the calibration's dtype × variant × seed parts, the bench's warm-ups, timed epochs and
predictions) and reports each one as it finishes, with :meth:`Progress.finished`:

- when stderr is a terminal: a bar there (``tqdm``: jobs done of the total, elapsed time,
  estimated time left, the last finished job), gone when the tool finishes;
- otherwise (piped, logged, CI): one counter line per finished job,
  ``3/12 [31 s] jax PASS: ... (classic, float64, ...)`` — jobs done, of the total, seconds since
  the start, the job — through the tool's line callback, so that a log says how far it got.

A tool whose job lines carry results (a mutant caught or not, a backend's verdict:
``results=True``) prints them in both modes, above the bar on a terminal. A tool called
without a line callback (``lines=None``: the Python API, the tests) shows nothing at all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any, Final

from tqdm import tqdm

SHOWN: Final = 40  # characters of the last finished job shown beside the bar


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is a terminal (False for a closed or fake one without ``isatty``)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class Progress:
    """``total`` jobs of one tool (``label``: the bar's name); see the module docstring.

    ``lines`` receives every line to print (the command prints it to stdout); ``stream`` is
    where the bar goes when it is a terminal (default: ``sys.stderr`` at construction). Use it
    as a context manager, or call :meth:`close`, so that the bar is taken down."""

    def __init__(
        self,
        total: int,
        label: str,
        lines: Callable[[str], None] | None,
        *,
        results: bool = False,
        stream: IO[str] | None = None,
    ) -> None:
        self.total = total
        self.done = 0
        self._lines = lines
        self._results = results
        self._started = time.perf_counter()
        stream = sys.stderr if stream is None else stream
        self._bar: tqdm[Any] | None = None
        if lines is not None and is_terminal(stream):
            # jobs take seconds: draw at every one (no rate limit, no skipped updates)
            self._bar = tqdm(
                total=total,
                desc=label,
                unit="job",
                file=stream,
                leave=False,
                mininterval=0,
                miniters=1,
            )

    @property
    def bar(self) -> bool:
        """Whether a bar shows (else: counter lines, or nothing without ``lines``)."""
        return self._bar is not None

    @property
    def seconds(self) -> float:
        """Seconds since the start."""
        return time.perf_counter() - self._started

    def counter(self, text: str) -> str:
        """The counter line of the job just finished: ``3/12 [31 s] TEXT``."""
        return f"{self.done}/{self.total} [{self.seconds:.0f} s] {text}"

    def finished(self, text: str) -> None:
        """One more job done; ``text`` says which (and, with ``results``, how it went)."""
        self.done += 1
        line = self.counter(text)
        if self._bar is None:
            self._print(line)
            return
        if self._results:
            self._above(line)
        self._bar.set_postfix_str(_short(text), refresh=False)
        self._bar.update()

    def note(self, text: str) -> None:
        """A line that is not a finished job (a child process's other output): printed as it is
        in both modes, above the bar on a terminal."""
        if self._bar is None:
            self._print(text)
        else:
            self._above(text)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _print(self, line: str) -> None:
        if self._lines is not None:
            self._lines(line)

    def _above(self, line: str) -> None:
        """Print ``line`` with the bar taken down and put back, so they do not mix."""
        assert self._bar is not None
        self._bar.clear()
        self._print(line)
        self._bar.refresh()


def _short(text: str) -> str:
    """``text`` on one line, runs of spaces collapsed, at most :data:`SHOWN` characters."""
    text = " ".join(text.split())
    return text if len(text) <= SHOWN else text[: SHOWN - 3] + "..."
