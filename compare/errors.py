"""The one exception type for bad input.

Anything a user can get wrong from outside the code — a missing or corrupt file, a wrong shape,
an unknown option, non-finite numbers — raises :class:`InputError` with a one-line message. The
CLI turns it into that line on stderr and exit code 2; the API lets it propagate.
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from outside the program (files, flags, data). Message is one line."""

    def __init__(self, message: str) -> None:
        if "\n" in message:
            raise AssertionError(f"InputError messages are one line. Received: {message!r}")
        super().__init__(message)


class ProtocolError(InputError):
    """An implementation that breaks the protocol (docs/protocol.md): it cannot be imported, a
    required method is missing, or a method returns something of the wrong kind. One line
    naming the method and what was wrong; the CLI exits 2."""


class JudgeUnavailable(InputError):
    """No float64 judge can be run for this check here (its backend computes part of a float64
    model in float32 and the backend that would judge it is not installed): exit 2, and a
    matrix cell that is n/a with the reason."""


class ImplementationError(Exception):
    """An exception raised inside the user's own implementation code. ``__cause__`` is the
    user's exception with its traceback; the CLI prints that traceback and exits 3."""

    def __init__(self, method: str, cause: BaseException) -> None:
        self.method = method
        super().__init__(
            f"the implementation raised {type(cause).__name__} in {method} (traceback above)"
        )
