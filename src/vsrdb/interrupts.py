"""Signals and the command's process: Ctrl-C never lost and never a traceback, at any moment of
start-up; and a restore started by ``vsrdb serve`` dies with the server.

Python's own handler raises ``KeyboardInterrupt`` wherever the main thread happens to be. While
the command starts, that is inside imports (torch takes a second or two), where libraries
turn it into something else or drop it: a ``__set_name__`` call wraps it in a ``RuntimeError``,
and a bare ``except:`` around an optional import swallows it, so the run goes on and exits 0.
So while the command starts, a SIGINT is only recorded; ``arm()``, called once the command
line is parsed, acts on a recorded one and from then on lets SIGINT raise as usual. A raise
that some library swallows later still leaves the record, which ``check()`` (called once per
restored frame and training step) and the command's end turn into an interrupted exit.

Library users are untouched: ``install()`` runs only when vsrdb is started as the command.
"""

from __future__ import annotations

import os
import signal
from types import FrameType

__all__ = ["install", "arm", "requested", "check", "exit_as_interrupted", "PARENT_ENV", "die_with_parent_if_asked"]

_requested = False
_armed = False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    if _armed:
        raise KeyboardInterrupt


def install() -> None:
    """Record SIGINTs instead of raising them until ``arm()``; call before the heavy imports.

    A SIGINT that the process inherited as ignored (a job started in the background by a
    non-interactive shell, ``nohup``) stays ignored, as Python itself would leave it.
    """
    try:
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, _on_sigint)
    except ValueError:  # not the main thread: Python's handler stays
        pass


def arm() -> None:
    """From now on a SIGINT raises ``KeyboardInterrupt``; one recorded during start-up raises now."""
    global _armed
    _armed = True
    check()


def requested() -> bool:
    """Whether a SIGINT arrived since ``install()`` (always False without it)."""
    return _requested


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived, even one that a library swallowed."""
    if _requested:
        raise KeyboardInterrupt


def exit_as_interrupted() -> None:
    """End the process as a SIGINT does (status -2, or 130 in a shell), so callers can tell."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGINT)
    os._exit(130)  # where the signal cannot end the process


PARENT_ENV = "VSRDB_DIE_WITH_PARENT"


def die_with_parent_if_asked() -> None:
    """Called first by a ``vsrdb restore`` the server started (``PARENT_ENV`` holds the
    server's pid): ask Linux to SIGKILL this process when the server dies, and exit at once if
    it died already. Done in the child itself, not in a ``preexec_fn``, which is unsafe in a
    threaded server."""
    parent = os.environ.get(PARENT_ENV)
    if not parent:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: a killed server may leave this run to finish on its own
    if os.getppid() != int(parent):
        os._exit(1)
