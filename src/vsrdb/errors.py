"""User-facing errors: one base class, so the command line can tell them from bugs.

``vsrdb``'s commands print a ``VsrdbError`` as one line and exit with status 2; anything else
is a bug and keeps its traceback. Each message names the file (or setting) and the problem.
They derive from ``ValueError`` so library callers that caught ``ValueError`` before still do.
"""

from __future__ import annotations

__all__ = ["VsrdbError", "InputError", "CheckpointError", "ConfigError", "printable"]


class VsrdbError(ValueError):
    """A failure the user can fix: bad input, settings or files. Printed as one line."""


class InputError(VsrdbError):
    """Bad input frames, files, paths or command-line values."""


class CheckpointError(VsrdbError):
    """A checkpoint that cannot be read or does not fit: names the file and the problem."""


class ConfigError(VsrdbError):
    """A bad training configuration or model setting: names the file or key."""


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\n``, ``\\x1b``...): a file name holding a
    newline would break a one-line message, and escape sequences would reach the terminal raw.
    Letters of any script are kept."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
