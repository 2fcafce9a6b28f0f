"""The ``vsrdb`` command: one parser over the subcommands in ``vsrdb.commands``.

A ``VsrdbError`` (bad input, settings or files) prints as one line naming the file and the
problem, with exit status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__, interrupts
from .errors import VsrdbError, printable


def build_parser() -> argparse.ArgumentParser:
    from .commands import subcommand_registrars

    parser = argparse.ArgumentParser(prog="vsrdb", description="Joint video super-resolution and deblurring.")
    parser.add_argument("--version", action="version", version=f"vsrdb {__version__}")
    parser.add_argument("--model-module", action="append", default=[], metavar="FILE_OR_MODULE",
                        help="import a model family of your own first (a .py file or a module name that calls "
                             "vsrdb.register_model); repeatable")
    sub = parser.add_subparsers(dest="command", required=True)
    for register in subcommand_registrars():
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        interrupts.arm()
        from .models import import_model_module

        for module in args.model_module:
            import_model_module(module)
        status = int(args.func(args) or 0)
        interrupts.check()  # a Ctrl-C that some library swallowed still ends the run as one
        return status
    except VsrdbError as e:
        if not interrupts.requested():
            print(f"vsrdb {args.command}: error: {printable(str(e))}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        pass
    except BrokenPipeError:
        # The reader of standard output left (vsrdb info | head): the usual quiet end of a
        # program in a pipe, as SIGPIPE would give.
        from .commands.common import quiet_stdout

        quiet_stdout()
        return 141
    except BaseException:
        # A KeyboardInterrupt that a library wrapped (a RuntimeError from __set_name__, say) is
        # still the user's Ctrl-C; anything else is a bug and keeps its traceback.
        if not interrupts.requested():
            raise
    print(f"vsrdb {args.command}: interrupted", file=sys.stderr)
    return 130


if __name__ == "__main__":
    sys.exit(main())
