"""Average two or more checkpoints of one architecture into a new model folder ("model soup").

Usage: python scripts/average_weights.py A B [C ...] -o OUT [--overwrite]
The built-in model is the average of its recipe's steps 2 and 3 (docs/builtin-model.md).
"""

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    from vsrdb.checkpoints import CheckpointError, average_checkpoints, save_checkpoint

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoints", nargs="+", help="checkpoint folders of one model family and config")
    p.add_argument("-o", "--output", required=True, help="model folder to write")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    try:
        model = average_checkpoints(args.checkpoints)
        save_checkpoint(model, args.output, overwrite=args.overwrite)
    except (CheckpointError, FileExistsError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: mean of {len(args.checkpoints)} checkpoints")
    return 0


if __name__ == "__main__":
    sys.exit(main())
