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
