"""``python -m vsrdb.train CONFIG.yaml [--resume]``, also under ``torchrun --nproc_per_node=N``."""

import sys

from ..cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
