"""The ``lenet-parity`` console script: a clean exit at every moment, even while importing.

:func:`main` imports only the standard library before it sets up its handlers; the command
itself (:mod:`compare.cli`, which imports NumPy, pandas and, later, Keras: most of the first
second) is imported inside them. So, at any moment:

- Ctrl-C (SIGINT): ``lenet-parity: interrupted`` on stderr, exit 130 (128 + SIGINT);
- SIGTERM: ``lenet-parity: terminated``, exit 143 (128 + SIGTERM); SIGHUP: ``hung up``, 129.
  Both are raised as an exception in the main thread, so every ``finally`` runs: temporary
  files and folders are removed, no output is left half-written;
- stdout closed early (``lenet-parity check | head -1``): exit 141 (128 + SIGPIPE, what a
  shell reports for a program killed by a broken pipe), silently: the reader chose to stop;
- otherwise the command's own exit code (0 success, 1 parity fails, 2 bad input or usage).

Never a traceback for any of these. A signal whose handler was ignored when the program
started (``nohup``, a background job) stays ignored. Once the command has returned, SIGINT and
SIGTERM get their default action back, so a signal during the interpreter's shutdown ends the
process at once instead of printing a traceback from an exit handler.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs 5 ms of start-up
if TYPE_CHECKING:
    from collections.abc import Sequence
    from types import FrameType
    from typing import NoReturn

PROG = "lenet-parity"
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE  # 141
_STOPPING = (signal.SIGTERM, signal.SIGHUP)
_NAMES: dict[int, str] = {signal.SIGTERM: "terminated", signal.SIGHUP: "hung up"}


class Terminated(BaseException):
    """SIGTERM or SIGHUP arrived: unwinds the stack like KeyboardInterrupt (so ``finally``
    blocks run) without being one (so code that handles Ctrl-C does not take it for one)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


# The signals that arrived. C code can turn the exception a handler raises into another one
# (measured: Ctrl-C 50 ms in, while NumPy's C extension imports ``datetime``, became an
# ImportError "PyCapsule_Import could not import module"), so the exit code comes from here.
_received: list[int] = []


def _terminate(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise Terminated(signum)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)
    raise KeyboardInterrupt


def _install() -> list[int]:
    """Raise :class:`Terminated` on SIGTERM and SIGHUP unless they were ignored; returns the
    signals whose default action :func:`_restore` gives back."""
    restore: list[int] = []
    for signum in _STOPPING:
        if signal.getsignal(signum) is signal.SIG_DFL:
            signal.signal(signum, _terminate)
            restore.append(signum)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _interrupt)
        restore.append(signal.SIGINT)
    return restore


def _restore(signals: list[int]) -> None:
    for signum in signals:
        signal.signal(signum, signal.SIG_DFL)


def _say(text: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # stderr may be gone too
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's final flush of what is still
    buffered cannot fail again (the recipe of the Python docs, "Note on SIGPIPE")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def run(argv: Sequence[str] | None = None) -> int:
    """Run the command (``argv``: the arguments after the program name; None: ``sys.argv``)
    and return the exit code, handling interrupts, termination and a closed stdout as the
    module docstring says."""
    restore = _install()
    try:
        try:
            from compare.cli import main as cli_main

            code = cli_main(None if argv is None else list(argv))
            sys.stdout.flush()
        except KeyboardInterrupt:
            _restore(restore)
            _say("interrupted")
            code = EXIT_INTERRUPTED
        except Terminated as stop:
            _restore(restore)
            _say(_NAMES.get(stop.signum, "terminated"))
            code = 128 + stop.signum
        except BrokenPipeError:
            _silence_stdout()
            code = EXIT_BROKEN_PIPE
        except Exception:
            if not _received:
                raise
            # the signal's exception was turned into another one by C code (see _received)
            _restore(restore)
            signum = _received[0]
            _say("interrupted" if signum == signal.SIGINT else _NAMES.get(signum, "terminated"))
            code = 128 + signum
    except KeyboardInterrupt:  # a second Ctrl-C while reporting the first
        code = EXIT_INTERRUPTED
    except Terminated as stop:
        code = 128 + stop.signum
    _restore(restore)
    return code


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script: :func:`run`, then exit with its code."""
    code = run(argv)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        _silence_stdout()
        code = code or EXIT_BROKEN_PIPE
    sys.exit(code)


if __name__ == "__main__":
    main()
