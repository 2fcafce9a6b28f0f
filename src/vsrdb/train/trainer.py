"""Training for every model family: resumable, on one CPU or many GPUs (torchrun + DDP).

The family says how it trains (``RestorationModel.training_stages`` and friends): its stages
in order (FMA-Net: ``netd`` then ``joint``; FMA-Net++: ``ete``, ``netd``, ``joint``; HOFFR and
JFFRA: ``main``), its loss and loss weights (``loss:`` in the config, read by the family), the
terms it logs and the flows it needs. The trainer knows none of them by name. Each stage's
settings are ``stages.<name>`` in the config (the older ``stage1``/``stage2`` keys still
work). Every network a stage trains has its own Adam optimiser whose learning rate halves at
70/85/95 % of the stage's iterations (the FMA-Net release steps NetD's scheduler twice per
epoch in stage 2 and NetR's never: a bug we do not copy).

Everything random is a function of (seed, step): the sampler gives each step's global batch
from per-epoch permutations, the dataset draws crops and flips from (seed, epoch, index).
A run killed and resumed from its last checkpoint therefore follows the same trajectory,
and N processes with a global batch B reproduce one process with batch B.

Run folder: ``config.yaml`` (resolved), ``log.csv``, ``tb/`` (TensorBoard),
``checkpoints/<stage>_last.pt`` (training state, written atomically) and each stage's model
as a vsrdb checkpoint (FMA-Net: ``stage1_netd/``; the last stage: ``model/``).
"""

from __future__ import annotations

import csv
import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from .. import interrupts
from ..checkpoints import load_checkpoint, save_checkpoint
from ..data.datasets import WindowDataset, find_clips, lr_size, validate_clips
from ..data.degrade import load_degradation
from ..data.flow import initial_flows, neighbour_flows
from ..data.resize import imresize
from ..devices import pick_device
from ..errors import CheckpointError, ConfigError, InputError
from ..evaluate.metrics import psnr, ssim
from ..files import hold_folder, release_folder, replace_atomically, save_torch_atomically, temporary_name, user_cache_dir
from ..models import RestorationModel, TrainingStage, build
from ..models.family import TRAINING_FLOWS
from ..precision import resolve_precision
from ..video import check_writable_folder
from .config import StageConfig, TrainConfig, config_to_dict

__all__ = ["StepSampler", "Trainer", "export_last"]

# log.csv's columns: these, one learning rate per network (lr_<part>) after "step", and the
# family's loss terms (``RestorationModel.loss_terms``) before the validation scores. They are
# fixed when the file is made, so it is never rewritten while training.
VALIDATION_COLUMNS = ["val_psnr", "val_ssim", "val_bicubic_psnr"]


class StepSampler(Sampler):
    """For steps ``start..end``, this process's share of each step's global batch.

    Yields lists of ``(epoch, index)``: global sample j of the run is position j % n of the
    permutation of epoch j // n (seeded by (seed, epoch)); process r of w takes every w-th.
    """

    def __init__(self, n: int, batch: int, *, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ConfigError(f"global batch {batch} is not divisible by the {world} processes")
        self.n, self.batch, self.seed, self.start, self.end = n, batch, seed, start, end
        self.rank, self.world = rank, world
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n)}
        return self._perms[epoch]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for step in range(self.start, self.end):
            items = []
            for j in range(step * self.batch, (step + 1) * self.batch):
                epoch, pos = divmod(j, self.n)
                items.append((epoch, int(self._perm(epoch)[pos])))
            yield items[self.rank::self.world]

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def _setup_distributed(device_name: str) -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and device_name != "cpu" else "gloo"
        dist.init_process_group(backend)
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = pick_device(device_name, local_rank=int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return rank, world, device


def default_cache_dir(root: str | Path) -> Path:
    """Where a dataset's computed flows are kept: under the user's cache, one folder per dataset
    (by its real path), never inside the dataset, which may be read-only or shared."""
    import hashlib

    real = os.path.realpath(root)
    digest = hashlib.sha256(real.encode()).hexdigest()[:12]
    return user_cache_dir() / "datasets" / f"{Path(real).name or 'root'}-{digest}"


class Trainer:
    """Runs every stage of a ``TrainConfig``'s model family in order; see the module docstring."""

    def __init__(self, cfg: TrainConfig, *, resume: bool = False, progress: bool = True,
                 stop_after: int | None = None) -> None:
        self.cfg = cfg
        self.resume = resume
        self.stop_after = stop_after  # for tests: simulate a kill after this many steps of a stage
        self.rank, self.world, self.device = _setup_distributed(cfg.device)
        self.main = self.rank == 0
        self.progress = progress and self.main
        self.amp = resolve_precision(cfg.amp, self.device)
        if self.main and self.amp.name != "fp32":
            print(f"vsrdb train: autocast {self.amp.describe()}", file=sys.stderr)
        self.run_dir = Path(cfg.run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        probe = build(cfg.model, **cfg.model_args)
        self.family = probe.preset or cfg.model
        self.weights = probe.loss_weights(cfg.loss)
        self.stages = probe.training_stages(self.weights)
        self.stage_settings = _stage_settings(cfg, self.stages)
        self.input_flow = probe.input_flow
        self.training_flows = dict(probe.training_flows)
        unknown = sorted(set(self.training_flows) - set(TRAINING_FLOWS))
        if unknown:
            raise ConfigError(f"{cfg.model}: training_flows asks for {unknown[0]!r}; the trainer computes "
                              f"{', '.join(TRAINING_FLOWS)}")
        self.scale = probe.scale
        self.val_window = probe.frames.length
        self.columns = self._log_columns(probe)
        self._check_run_dir()
        self._prepare_data()  # data errors come before anything is written: no empty run folder
        self._make_run_dir()
        self.tb = None

    # ------------------------------------------------------------------ setup

    def _check_run_dir(self) -> None:
        started = self.ckpt_dir.exists() and any(self.ckpt_dir.iterdir())
        if started and not self.resume:
            raise InputError(f"{self.run_dir}: holds a started run; pass --resume to continue it "
                             f"or choose another run_dir")

    def _make_run_dir(self) -> None:
        if self.main:
            import yaml

            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            # One run per run_dir: a second one would write every step into log.csv again.
            hold_folder(self.run_dir, busy=f"{self.run_dir}: another training run is using this run_dir; wait for "
                                           "it to finish or stop it first, or choose another run_dir")
            self._check_run_dir()  # a run that started between the first check and the lock
            resolved = config_to_dict(self.cfg) | {"loss": dataclasses.asdict(self.weights)}
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(_plain(resolved), sort_keys=False))

    def _prepare_data(self) -> None:
        d = self.cfg.data
        scale = self.scale
        train_split = "train" if (d.layout == "reds" and d.val_root is None) else "all"
        clips = find_clips(d.layout, d.root, hr_root=d.hr_root, split=train_split, scale=scale)
        validate_clips(clips, scale, min_frames=1)
        for clip in clips:  # a crop must fit every clip, or the first batch that draws it fails
            h, w = lr_size(clip, scale)
            if d.patch > min(h, w):
                raise ConfigError(f"data.patch {d.patch} is larger than clip {clip.name}'s LR frames ({w}x{h}); "
                                  f"use data.patch {min(h, w)} or less")
        val_layout = d.val_layout or d.layout
        val_root = d.val_root or d.root
        val_split = "val" if (val_layout == "reds" and d.val_root is None) else "all"
        val_clips = find_clips(val_layout, val_root, hr_root=d.val_hr_root or d.hr_root, split=val_split,
                               scale=scale)
        validate_clips(val_clips, scale, min_frames=1)
        cache = d.cache_dir or str(default_cache_dir(d.root))
        try:  # computed flows go here: refuse an unwritable folder now, not at the first batch
            Path(cache).mkdir(parents=True, exist_ok=True)
            check_writable_folder(Path(cache))
        except (OSError, InputError) as e:
            raise ConfigError(f"data.cache_dir {cache}: cannot write the flow cache there ({e}); set "
                              "data.cache_dir to a writable folder") from None
        # One data order for the whole run: the widest window any stage needs, from which a
        # stage with a narrower one takes the middle frames.
        self.train_window = max(s.window for s in self.stages)
        self.train_set = WindowDataset(clips, num_seq=self.train_window, patch=d.patch, flow=d.flow, cache_dir=cache,
                                       augment=True, seed=self.cfg.seed, scale=scale,
                                       degrade=load_degradation(d.degrade, where="data.degrade"))
        self.val_set = WindowDataset(val_clips, num_seq=self.val_window, patch=None, flow=None, augment=False,
                                     scale=scale)
        n = len(self.val_set)
        k = min(d.val_windows, n)
        self.val_indices = [round(i * (n - 1) / max(k - 1, 1)) for i in range(k)]

    # ------------------------------------------------------------------ stages

    def run(self) -> Path:
        self._stopped = False
        try:
            for index in range(len(self.stages)):
                self._run_stage(index)
                if self._stopped:
                    return self.run_dir
            if dist.is_initialized():
                dist.barrier()
            return self.run_dir / self.stages[-1].result
        finally:
            release_folder(self.run_dir)

    def _stage_done(self, stage: TrainingStage) -> bool:
        return (self.run_dir / stage.result / "config.json").exists()

    def _number(self, index: int) -> int:
        return _stage_number(index, len(self.stages))

    def _state_path(self, index: int) -> Path:
        path = self.ckpt_dir / f"{self.stages[index].name}_last.pt"
        legacy = self.ckpt_dir / f"stage{self._number(index)}_last.pt"  # runs started before stages had names
        return legacy if (self.resume and not path.exists() and legacy.exists()) else path

    def _run_stage(self, index: int) -> None:
        cfg = self.cfg
        stage = self.stages[index]
        scfg = self.stage_settings[stage.name]
        number = self._number(index)
        last_stage = index == len(self.stages) - 1
        self._stopped = False
        if self._stage_done(stage) or scfg.iterations <= 0 or (stage.replaced_by_init and cfg.init):
            return
        torch.manual_seed(cfg.seed + number)  # initial weights: part of the seeded trajectory
        model = build(cfg.model, **{**cfg.model_args, **stage.build_args}).to(self.device)
        if last_stage and cfg.init:
            _load_init(model, cfg.init)
        elif index > 0 and self._stage_done(self.stages[index - 1]):
            model.start_stage(stage, load_checkpoint(self.run_dir / self.stages[index - 1].result))
        parts = model.trainable_parts(stage)
        optims = [torch.optim.Adam(part.parameters(), lr=scfg.lr) for _, part in parts]
        milestones = sorted({max(1, int(round(f * scfg.iterations))) for f in cfg.milestones})
        scheds = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=milestones, gamma=cfg.gamma) for o in optims]
        start = 0
        last = self._state_path(index)
        if self.resume and last.exists():
            state = torch.load(last, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            for o, s in zip(optims, state["optimizers"]):
                o.load_state_dict(s)
            for sch, s in zip(scheds, state["schedulers"]):
                sch.load_state_dict(s)
            start = int(state["step"])
        last = self.ckpt_dir / f"{stage.name}_last.pt"
        self._trim_logs(stage.name, start)
        net: torch.nn.Module = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        model.train()
        batch_size = scfg.batch if scfg.batch is not None else cfg.data.batch
        sampler = StepSampler(len(self.train_set), batch_size, seed=cfg.seed + 1000 * number, start=start,
                              end=scfg.iterations, rank=self.rank, world=self.world)
        loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=cfg.data.workers,
                            persistent_workers=False, pin_memory=self.device.type == "cuda")
        from tqdm import tqdm

        bar = tqdm(total=scfg.iterations, initial=start, desc=f"{cfg.name + ' ' if cfg.name else ''}stage {stage.name}",
                   unit="it",
                   disable=not self.progress, dynamic_ncols=True, file=sys.stderr)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.name == "fp16")
        t0 = time.perf_counter()
        step = start
        for batch in loader:
            interrupts.check()
            batch = self._prepare_batch(batch, stage)
            # Weights and optimiser state stay fp32; autocast runs the convolutions and matmuls in
            # bf16/fp16, and the ops pinned to fp32 (warping, kernel normalisation) stay there.
            with torch.autocast(self.device.type, dtype=self.amp.dtype, enabled=self.amp.name != "fp32"):
                loss, terms = model.training_loss(net, batch, stage, self.weights)
            for o in optims:
                o.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            for o, sch in zip(optims, scheds):
                scaler.step(o)
                sch.step()
            scaler.update()
            step += 1
            bar.update(1)
            if step % cfg.log_every == 0 or step == scfg.iterations:
                self._log(stage.name, step, terms, parts, optims, time.perf_counter() - t0)
                bar.set_postfix_str(f"loss {loss.item():.4f}")
            if step % cfg.checkpoint_every == 0 or step == scfg.iterations:
                self._save_state(last, model, optims, scheds, step)
            if step % cfg.val_every == 0 or step == scfg.iterations:
                self._validate(model, stage, step)
                model.train()
            if self.stop_after is not None and step - start >= self.stop_after and step < scfg.iterations:
                self._stopped = True
                break
        bar.close()
        if not self._stopped and self.main:
            model.eval()
            save_checkpoint(model, self.run_dir / stage.result, overwrite=True)
        if dist.is_initialized():
            dist.barrier()

    def _prepare_batch(self, batch: dict[str, torch.Tensor], stage: TrainingStage) -> dict[str, torch.Tensor]:
        """On the device, cut to the stage's window, with the family's input flow added."""
        batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
        extra = self.train_window - stage.window
        if extra:
            middle = slice(extra // 2, extra // 2 + stage.window)
            batch = {k: v[:, :, middle] if v.dim() == 5 else v for k, v in batch.items()}
        if self.input_flow is not None:
            batch["input_flow"] = initial_flows(batch["lr"], self.input_flow)
        for key, estimator in self.training_flows.items():  # only key so far: neighbour_flow
            batch[key] = neighbour_flows(batch["lr_sharp"], estimator)
        return batch

    # ------------------------------------------------------------------ bookkeeping

    def _save_state(self, path: Path, model, optims, scheds, step: int) -> None:
        if not self.main:
            return
        save_torch_atomically({"step": step, "model": model.state_dict(),
                               "optimizers": [o.state_dict() for o in optims],
                               "schedulers": [s.state_dict() for s in scheds]}, path)

    def _reduce(self, value: torch.Tensor) -> float:
        if dist.is_initialized():
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def _log(self, stage: str, step: int, terms: dict, parts, optims, seconds: float) -> None:
        if self.columns is None:  # a family that does not declare its terms: the first step's, for the run
            self.columns = self._prefix + list(terms) + VALIDATION_COLUMNS
        unknown = [k for k in terms if k not in self.columns]
        if unknown:
            raise ConfigError(f"{self.family}: stage {stage} logs loss terms {', '.join(unknown)} that "
                              f"{self.run_dir / 'log.csv'} has no column for (its terms: "
                              f"{', '.join(c for c in self.columns if c not in self._prefix + VALIDATION_COLUMNS)}); "
                              "declare every stage's terms in loss_terms(), or start a new run_dir")
        values = {k: self._reduce(v) for k, v in terms.items()}
        if not self.main:
            return
        lrs = {f"lr_{name}": o.param_groups[0]["lr"] for (name, _), o in zip(parts, optims)}
        row = {"stage": stage, "step": step, **lrs, "seconds": round(seconds, 2),
               **{k: f"{v:.9g}" for k, v in values.items()}}
        self._write_csv(row)
        tb = self._tensorboard()
        if tb is not None:
            for k, v in {**values, **lrs}.items():
                tb.add_scalar(f"{stage}/{k}", v, step)

    def _log_columns(self, probe: RestorationModel) -> list[str] | None:
        """log.csv's columns: an existing file's (a resumed run keeps its header), else the
        fixed ones with the family's declared terms; None until the first step for a family
        that declares none."""
        lrs: list[str] = []
        for stage in self.stages:
            model = build(self.cfg.model, **{**self.cfg.model_args, **stage.build_args})
            lrs += [f"lr_{name}" for name, _ in model.trainable_parts(stage) if f"lr_{name}" not in lrs]
        self._prefix = ["stage", "step", *lrs, "seconds"]
        path = self.run_dir / "log.csv"
        if self.resume and path.exists():
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                return header
        declared = [probe.loss_terms(stage, self.weights) for stage in self.stages]
        if any(d is None for d in declared):
            return None
        terms = list(dict.fromkeys(t for d in declared for t in d or ()))
        return self._prefix + terms + VALIDATION_COLUMNS

    def _write_csv(self, row: dict) -> None:
        """Append one row (fixed columns, so the file is never rewritten while training)."""
        if self.columns is None:  # validation before the first logged step
            return
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _trim_logs(self, stage: str, start: int) -> None:
        """On resume, drop log rows the killed run wrote after its last checkpoint."""
        path = self.run_dir / "log.csv"
        if not self.main or not path.exists() or self.columns is None:
            return
        names = [s.name for s in self.stages]
        here = names.index(stage)

        def keep(row: dict) -> bool:
            at = names.index(row["stage"]) if row["stage"] in names else -1
            return at < here or (at == here and int(row["step"]) <= start)

        rows = [r for r in _read_csv(path) if keep(r)]
        tmp = temporary_name(path)
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        replace_atomically(tmp, path)

    def _tensorboard(self):
        if self.tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: CSV only
                self.tb = False
                return None
            self.tb = SummaryWriter(str(self.run_dir / "tb"))
        return self.tb or None

    @torch.no_grad()
    def _validate(self, model: RestorationModel, stage: TrainingStage, step: int) -> None:
        if not self.main:
            return
        model.eval()
        scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "bicubic_psnr": []}
        c = self.val_window // 2
        for i in self.val_indices:
            item = self.val_set[i]
            lr, hr = item["lr"][None].to(self.device), item["hr"][None].to(self.device)
            inputs = {"flows": initial_flows(lr, self.input_flow)} if self.input_flow is not None else {}
            pair = model.validation_pair(lr, hr, stage, **inputs)
            if pair is None:  # a stage with no picture to score (FMA-Net++'s ETE)
                return
            pred, target = pair
            if model.can_restore:
                bicubic = imresize(lr[0, :, c], float(self.scale)).clamp(0, 1)
                scores["bicubic_psnr"].append(psnr(bicubic.cpu(), target.cpu()))
            scores["psnr"].append(psnr(pred.cpu(), target.cpu()))
            scores["ssim"].append(ssim(pred.cpu(), target.cpu()))
        result = {k: float(np.mean(v)) for k, v in scores.items() if v}
        self._write_csv({"stage": stage.name, "step": step, **{f"val_{k}": f"{v:.4f}" for k, v in result.items()}})
        tb = self._tensorboard()
        if tb is not None:
            for k, v in result.items():
                tb.add_scalar(f"{stage.name}/val_{k}", v, step)


def _stage_number(index: int, count: int) -> int:
    """A stage's number for seeds and pre-naming checkpoint files: its place counted from the last
    (which is 2), so a one-stage family's run follows the same seeds as FMA-Net's final stage."""
    return index + 3 - count


def _stage_settings(cfg: TrainConfig, stages: list[TrainingStage]) -> dict[str, StageConfig]:
    """Each stage's iterations and learning rate: ``stages.<name>``, else the legacy key."""
    names = [s.name for s in stages]
    unknown = sorted(set(cfg.stages) - set(names))
    if unknown:
        raise ConfigError(f"stages.{unknown[0]}: {cfg.model} trains in stage(s) {', '.join(names)}")
    settings = {}
    for s in stages:
        legacy = getattr(cfg, s.legacy_key) if s.legacy_key else None
        settings[s.name] = cfg.stages.get(s.name) or legacy or StageConfig()
    return settings


# Fields a checkpoint may differ in and still start a run: another scale of the same network
# (FMA-Net's body is the same at x1, x2 and x4; k_d follows the scale's parity).
_SCALE_FIELDS = {"scale", "ds_kernel_size"}


def _load_init(model: RestorationModel, path: str) -> None:
    """Copy a checkpoint's weights into ``model``; the two must be the same architecture, or the same
    network at another scale: then every tensor of the same name and shape is taken (the body), and
    the layers that see image channels or kernels of another size start fresh."""
    init = load_checkpoint(path)
    if init.config == model.config:
        model.load_state_dict(init.state_dict())
        return
    da, db = dataclasses.asdict(init.config), dataclasses.asdict(model.config)
    differ = {k for k in da if da[k] != db.get(k)}
    if type(init.config) is not type(model.config) or not differ <= _SCALE_FIELDS or "scale" not in differ:
        raise CheckpointError(f"init {path}: its config differs from the run's model "
                              f"({_config_difference(init.config, model.config)})")
    own = model.state_dict()
    taken = {k: v for k, v in init.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(taken, strict=False)
    print(f"init {path}: x{init.scale} weights at x{model.scale}: {len(taken)} of {len(own)} tensors taken "
          f"({sum(v.numel() for v in taken.values()) / sum(v.numel() for v in own.values()):.0%} of the "
          "parameters); the rest start fresh", file=sys.stderr)


def _config_difference(a, b) -> str:
    import dataclasses

    da, db = dataclasses.asdict(a), dataclasses.asdict(b)
    diffs = [f"{k}: {da[k]!r} vs {db.get(k)!r}" for k in da if da[k] != db.get(k)]
    return ", ".join(diffs) or f"{type(a).__name__} vs {type(b).__name__}"


def _read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [dict(r) for r in csv.DictReader(f)]


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def export_last(cfg: TrainConfig, out: str | Path) -> Path:
    """The run's most advanced training checkpoint (the latest stage's) as a model folder.

    For looking at, or shipping, a run that was stopped before its final ``model/``. Refuses
    to overwrite ``out``.
    """
    ckpt_dir = Path(cfg.run_dir) / "checkpoints"
    probe = build(cfg.model, **cfg.model_args)
    stages = probe.training_stages(probe.loss_weights(cfg.loss))
    for index in reversed(range(len(stages))):
        stage = stages[index]
        number = _stage_number(index, len(stages))
        found = [p for p in (ckpt_dir / f"{stage.name}_last.pt", ckpt_dir / f"stage{number}_last.pt") if p.exists()]
        if found:
            break
    else:
        raise InputError(f"{ckpt_dir}: no training checkpoint to export")
    state = torch.load(found[0], map_location="cpu", weights_only=True)
    model = build(cfg.model, **{**cfg.model_args, **stage.build_args})
    model.load_state_dict(state["model"])
    model.eval()
    return save_checkpoint(model, out)
