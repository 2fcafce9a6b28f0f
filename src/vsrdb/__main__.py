"""``python -m vsrdb``: the ``vsrdb`` command, also as torchrun's module (``torchrun -m vsrdb restore ...``)."""

import sys

from .cli import main

sys.exit(main())
