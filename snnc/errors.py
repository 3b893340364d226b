"""The one exception type of snnc.

Library code raises :class:`SnncError` with a message a user can act on (what is wrong, what to do);
the CLI prints it as one line on stderr and exits with ``exit_code`` (1 failure, 2 usage).
"""

from __future__ import annotations


class SnncError(Exception):
    """A failure the user can act on. ``str(err)`` is the one line the CLI prints."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class UsageError(SnncError):
    """Bad arguments or bad input files (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)
