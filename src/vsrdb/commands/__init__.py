"""The ``vsrdb`` subcommands, one module each; ``vsrdb.cli`` puts them under one parser.

Commands sit on top of the library: they import it, it never imports them. Flags several
commands share are defined once in ``common``.
"""

from __future__ import annotations

import importlib

__all__ = ["COMMANDS", "subcommand_registrars"]

# In the order ``vsrdb --help`` lists them.
COMMANDS = ("info", "demo", "restore", "serve", "evaluate", "train", "synth", "data", "export")


def subcommand_registrars():
    """Each command module's ``add_subcommand``; imported when the parser is built."""
    return [importlib.import_module(f"{__name__}.{name}").add_subcommand for name in COMMANDS]
