"""The ``vsrdb train`` subcommand."""

from __future__ import annotations

import argparse


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model (the family's stages, e.g. two for FMA-Net) from a YAML config",
                       description="Train from a YAML config (see configs/). Multi-GPU or multi-process: "
                                   "torchrun --nproc_per_node=N -m vsrdb.train CONFIG.yaml")
    p.add_argument("config", help="YAML config (configs/fmanet_reds.yaml is the paper's recipe)")
    p.add_argument("--resume", action="store_true", help="continue the run in the config's run_dir")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set stages.joint.iterations=100 (YAML value)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--export", metavar="DIR",
                   help="do not train: write the run's latest training checkpoint as a model folder DIR")
    p.set_defaults(func=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    import yaml

    from ..errors import ConfigError
    from ..train.config import load_config
    from ..train.trainer import Trainer

    overrides = {}
    for item in args.set:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        if not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {item!r}: {key!r} is not a key (e.g. stages.joint.iterations)")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: the value is not valid YAML ({str(e).splitlines()[0]})") from None
    cfg = load_config(args.config, overrides)
    if args.export:
        from ..train.trainer import export_last

        print(f"exported: {export_last(cfg, args.export)}")
        return 0
    import torch.distributed as dist

    try:
        out = Trainer(cfg, resume=args.resume, progress=not args.quiet).run()
    finally:
        # Under torchrun: gloo's threads must be gone before the interpreter tears down, or a
        # rank can die of SIGABRT at exit (seen on a busy machine) after training went well.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    print(f"trained: {out}")
    return 0
