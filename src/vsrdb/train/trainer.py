"""Training for every registry model: resumable, on one CPU or many GPUs (torchrun + DDP).

FMA-Net trains in two stages (below). HOFFR and JFFRA train in one, run as "stage 2" (the
final stage: its checkpoint is ``stage2_last.pt`` and its result ``model/``); their
``stage1`` settings are ignored. Each family has its loss (``losses``); the occlusion-aware
temporal loss is added to any of them with ``loss.temporal`` (JFFRA has it by default).

Stage 1 trains NetD alone; stage 2 starts from the stage-1 NetD and trains both networks,
each with its own Adam optimiser whose learning rate halves at 70/85/95 % of the stage's
iterations (the release steps NetD's scheduler twice per epoch in stage 2 and NetR's never:
a bug we do not copy).

Everything random is a function of (seed, step): the sampler gives each step's global batch
from per-epoch permutations, the dataset draws crops and flips from (seed, epoch, index).
A run killed and resumed from its last checkpoint therefore follows the same trajectory,
and N processes with a global batch B reproduce one process with batch B.

Run folder: ``config.yaml`` (resolved), ``log.csv``, ``tb/`` (TensorBoard),
``checkpoints/stage{1,2}_last.pt`` (training state, written atomically), ``stage1_netd/``
and ``model/`` (vsrdb checkpoints of the stage-1 NetD and the final model).
"""

from __future__ import annotations

import csv
import os
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler

from ..checkpoints import load_checkpoint, save_checkpoint
from ..data.datasets import WindowDataset, find_clips, validate_clips
from ..data.resize import imresize
from ..evaluate.metrics import psnr, ssim
from ..models import FMANet, HOFFR, JFFRA, build
from ..precision import resolve_precision
from .config import TrainConfig, config_to_dict
from .losses import fmanet_loss, hoffr_loss, jffra_loss, temporal_terms

__all__ = ["StepSampler", "Trainer", "train", "LOG_COLUMNS"]

LOG_COLUMNS = ["stage", "step", "lr_d", "lr_r", "seconds", "total", "loss_d", "recon", "hr_warp", "flow", "anchor_d",
               "restore", "lr_warp", "anchor_r", "val_psnr", "val_ssim", "val_bicubic_psnr", "deblur", "flow_warp",
               "temporal"]


def _two_stage(model: torch.nn.Module) -> bool:
    return isinstance(model, FMANet)


def temporal_weight(model: torch.nn.Module, weights) -> float:
    """The occlusion-aware temporal loss weight in effect (JFFRA's default 0.2, else off)."""
    if weights.temporal is not None:
        return weights.temporal
    return 0.2 if isinstance(model, JFFRA) else 0.0


def _parts(model: torch.nn.Module, stage: int) -> list[torch.nn.Module]:
    """The networks trained in ``stage``, each with its own optimiser (FMA-Net: NetD, NetR)."""
    if _two_stage(model):
        return [model.net_d] if stage == 1 else [model.net_d, model.net_r]
    return [model]


class StepSampler(Sampler):
    """For steps ``start..end``, this process's share of each step's global batch.

    Yields lists of ``(epoch, index)``: global sample j of the run is position j % n of the
    permutation of epoch j // n (seeded by (seed, epoch)); process r of w takes every w-th.
    """

    def __init__(self, n: int, batch: int, *, seed: int, start: int, end: int, rank: int = 0, world: int = 1):
        if batch % world:
            raise ValueError(f"global batch {batch} is not divisible by the {world} processes")
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
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_name)
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    return rank, world, device


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Trainer:
    """Runs both stages of a ``TrainConfig``; see the module docstring."""

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
        self._check_run_dir()
        self._prepare_data()
        self.tb = None

    # ------------------------------------------------------------------ setup

    def _check_run_dir(self) -> None:
        started = self.ckpt_dir.exists() and any(self.ckpt_dir.iterdir())
        if started and not self.resume:
            raise ValueError(f"{self.run_dir}: holds a started run; pass --resume to continue it "
                             f"or choose another run_dir")
        if self.main:
            import yaml

            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(_plain(config_to_dict(self.cfg)),
                                                                      sort_keys=False))

    def _prepare_data(self) -> None:
        d = self.cfg.data
        scale = 4
        probe = build(self.cfg.model, **self.cfg.model_args)
        self.num_seq = probe.config.num_seq
        self.two_stage = _two_stage(probe)
        # FMA-Net restores only the centre of its window: for the temporal loss it also
        # restores both neighbours, from a window two frames wider.
        self.extra = 2 if (self.two_stage and temporal_weight(probe, self.cfg.loss)) else 0
        train_split = "train" if (d.layout == "reds" and d.val_root is None) else "all"
        clips = find_clips(d.layout, d.root, hr_root=d.hr_root, split=train_split, scale=scale)
        validate_clips(clips, scale, min_frames=1)
        val_layout = d.val_layout or d.layout
        val_root = d.val_root or d.root
        val_split = "val" if (val_layout == "reds" and d.val_root is None) else "all"
        val_clips = find_clips(val_layout, val_root, hr_root=d.val_hr_root or d.hr_root, split=val_split,
                               scale=scale)
        validate_clips(val_clips, scale, min_frames=1)
        cache = d.cache_dir or str(Path(d.root) / ".vsrdb-cache")
        self.train_set = WindowDataset(clips, num_seq=self.num_seq + self.extra, patch=d.patch, flow=d.flow, cache_dir=cache,
                                       augment=True, seed=self.cfg.seed)
        self.val_set = WindowDataset(val_clips, num_seq=self.num_seq, patch=None, flow=None, augment=False)
        n = len(self.val_set)
        k = min(d.val_windows, n)
        self.val_indices = [round(i * (n - 1) / max(k - 1, 1)) for i in range(k)]

    # ------------------------------------------------------------------ stages

    def run(self) -> Path:
        for stage in (1, 2):
            self._run_stage(stage)
            if self.stop_after is not None and self._stopped:
                return self.run_dir
        if dist.is_initialized():
            dist.barrier()
        return self.run_dir / "model"

    def _stage_done(self, stage: int) -> bool:
        return (self.run_dir / ("stage1_netd" if stage == 1 else "model") / "config.json").exists()

    def _run_stage(self, stage: int) -> None:
        cfg = self.cfg
        scfg = cfg.stage1 if stage == 1 else cfg.stage2
        self._stopped = False
        if self._stage_done(stage) or scfg.iterations <= 0 or (stage == 1 and (cfg.init or not self.two_stage)):
            return
        torch.manual_seed(cfg.seed + stage)  # initial weights: part of the seeded trajectory
        stage_arg = {"stage": stage} if self.two_stage else {}
        model = build(cfg.model, **{**cfg.model_args, **stage_arg}).to(self.device)
        if stage == 2 and cfg.init:
            _load_init(model, cfg.init)
        elif stage == 2 and self.two_stage and cfg.stage1.iterations > 0:
            netd = load_checkpoint(self.run_dir / "stage1_netd")
            model.net_d.load_state_dict(netd.net_d.state_dict())
        nets = _parts(model, stage)
        optims = [torch.optim.Adam(n.parameters(), lr=scfg.lr) for n in nets]
        milestones = sorted({max(1, int(round(f * scfg.iterations))) for f in cfg.milestones})
        scheds = [torch.optim.lr_scheduler.MultiStepLR(o, milestones=milestones, gamma=cfg.gamma) for o in optims]
        start = 0
        last = self.ckpt_dir / f"stage{stage}_last.pt"
        if self.resume and last.exists():
            state = torch.load(last, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            for o, s in zip(optims, state["optimizers"]):
                o.load_state_dict(s)
            for sch, s in zip(scheds, state["schedulers"]):
                sch.load_state_dict(s)
            start = int(state["step"])
        self._trim_logs(stage, start)
        net = model
        if self.world > 1:
            net = torch.nn.parallel.DistributedDataParallel(
                model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        model.train()
        sampler = StepSampler(len(self.train_set), cfg.data.batch, seed=cfg.seed + 1000 * stage, start=start,
                              end=scfg.iterations, rank=self.rank, world=self.world)
        loader = DataLoader(self.train_set, batch_sampler=sampler, num_workers=cfg.data.workers,
                            persistent_workers=False, pin_memory=self.device.type == "cuda")
        from tqdm import tqdm

        bar = tqdm(total=scfg.iterations, initial=start, desc=f"stage {stage}", unit="it",
                   disable=not self.progress, dynamic_ncols=True, file=sys.stderr)
        # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp.name == "fp16")
        t0 = time.perf_counter()
        step = start
        for batch in loader:
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            # Weights and optimiser state stay fp32; autocast runs the convolutions and matmuls in
            # bf16/fp16, and the ops pinned to fp32 (warping, kernel normalisation) stay there.
            with torch.autocast(self.device.type, dtype=self.amp.dtype, enabled=self.amp.name != "fp32"):
                loss, terms = self._loss(model, net, batch, stage)
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
                self._log(stage, step, terms, optims, time.perf_counter() - t0)
                bar.set_postfix_str(f"loss {terms['total'].item():.4f}")
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
            if stage == 1:
                save_checkpoint(model, self.run_dir / "stage1_netd", overwrite=True)
            else:
                save_checkpoint(model, self.run_dir / "model", overwrite=True)
        if dist.is_initialized():
            dist.barrier()

    def _loss(self, model, net, batch: dict[str, torch.Tensor], stage: int) -> tuple[torch.Tensor, dict]:
        """The family's loss (plus the temporal loss when switched on) for one batch."""
        w = self.cfg.loss
        tw = temporal_weight(model, w)
        lr, hr, lr_sharp, flow = batch["lr"], batch["hr"], batch["lr_sharp"], batch["flow"]
        if isinstance(model, FMANet):
            restored = None
            if self.extra:
                t, b = self.num_seq, lr.shape[0]
                subs = [slice(j, j + t) for j in range(3)]  # windows centred on frames c-1, c, c+1
                if stage == 2:
                    out3 = net(torch.cat([lr[:, :, s] for s in subs]), torch.cat([hr[:, :, s] for s in subs]))
                    restored = torch.stack(out3["output"].float().chunk(3), dim=2)
                    out = {k: v[b:2 * b] for k, v in out3.items()}
                else:
                    out = net(lr[:, :, subs[1]], hr[:, :, subs[1]])
                lr, hr, lr_sharp, flow = (z[:, :, subs[1]] for z in (lr, hr, lr_sharp, flow))
            else:
                out = net(lr, hr)
            loss, terms = fmanet_loss({k: v.float() for k, v in out.items()}, lr=lr, hr=hr, lr_sharp=lr_sharp,
                                      flow_gt=flow, stage=stage, weights=w)
            if restored is not None:
                c = self.num_seq // 2 + 1
                temporal = temporal_terms(restored, batch["hr"][:, :, c - 1:c + 2], batch["flow"][:, :, c - 1:c + 2],
                                          w.temporal_alpha)
                loss = loss + tw * temporal
                terms = {**terms, "temporal": temporal.detach(), "total": loss.detach()}
            return loss, terms
        out = net(lr, hr)
        if isinstance(model, JFFRA):
            return jffra_loss(out, hr=hr, flow_gt=flow, weights=w)
        if isinstance(model, HOFFR):
            loss, terms = hoffr_loss(out, hr=hr, lr_sharp=lr_sharp, weights=w)
            if tw:
                c = self.num_seq // 2
                temporal = temporal_terms(out["outputs"][:, :, c - 1:c + 2], hr[:, :, c - 1:c + 2],
                                          flow[:, :, c - 1:c + 2], w.temporal_alpha)
                loss = loss + tw * temporal
                terms = {**terms, "temporal": temporal.detach(), "total": loss.detach()}
            return loss, terms
        raise TypeError(f"no training loss for {type(model).__name__}")

    # ------------------------------------------------------------------ bookkeeping

    def _save_state(self, path: Path, model, optims, scheds, step: int) -> None:
        if not self.main:
            return
        _atomic_save({"step": step, "model": model.state_dict(),
                      "optimizers": [o.state_dict() for o in optims],
                      "schedulers": [s.state_dict() for s in scheds]}, path)

    def _reduce(self, value: torch.Tensor) -> float:
        if dist.is_initialized():
            value = value.detach().clone()
            dist.all_reduce(value)
            value /= self.world
        return value.item()

    def _log(self, stage: int, step: int, terms: dict, optims, seconds: float) -> None:
        values = {k: self._reduce(v) for k, v in terms.items()}
        if not self.main:
            return
        lrs = {f"lr_{name}": o.param_groups[0]["lr"] for name, o in zip(("d", "r"), optims)}
        row = {"stage": stage, "step": step, **lrs, "seconds": round(seconds, 2),
               **{k: f"{v:.9g}" for k, v in values.items()}}
        self._write_csv(row)
        tb = self._tensorboard()
        if tb is not None:
            for k, v in values.items():
                tb.add_scalar(f"stage{stage}/{k}", v, step)
            for k, v in lrs.items():
                tb.add_scalar(f"stage{stage}/{k}", v, step)

    def _write_csv(self, row: dict) -> None:
        """Append one row (fixed columns, so the file is never rewritten while training)."""
        path = self.run_dir / "log.csv"
        new = not path.exists()
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, restval="")
            if new:
                writer.writeheader()
            writer.writerow(row)

    def _trim_logs(self, stage: int, start: int) -> None:
        """On resume, drop log rows the killed run wrote after its last checkpoint."""
        path = self.run_dir / "log.csv"
        if not self.main or not path.exists():
            return
        rows = [r for r in _read_csv(path)
                if int(r["stage"]) < stage or (int(r["stage"]) == stage and int(r["step"]) <= start)]
        tmp = path.with_name(".log.csv.tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=LOG_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)

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
    def _validate(self, model, stage: int, step: int) -> dict[str, float]:
        if not self.main:
            return {}
        model.eval()
        scores = {"psnr": [], "ssim": [], "bicubic_psnr": []}
        c = self.num_seq // 2
        for i in self.val_indices:
            item = self.val_set[i]
            lr, hr = item["lr"][None].to(self.device), item["hr"][None].to(self.device)
            if stage == 1:  # NetD is scored on re-degrading the sharp window into the blurry centre
                pred, target = model(lr, hr)["recon"][0], lr[0, :, c]
            else:
                pred, target = model.restore(lr)[0], hr[0, :, c]
                scores["bicubic_psnr"].append(psnr(imresize(lr[0, :, c], 4.0).clamp(0, 1).cpu(), target.cpu()))
            scores["psnr"].append(psnr(pred.cpu(), target.cpu()))
            scores["ssim"].append(ssim(pred.cpu(), target.cpu()))
        result = {k: float(np.mean(v)) for k, v in scores.items() if v}
        self._write_csv({"stage": stage, "step": step, **{f"val_{k}": f"{v:.4f}" for k, v in result.items()}})
        tb = self._tensorboard()
        if tb is not None:
            for k, v in result.items():
                tb.add_scalar(f"stage{stage}/val_{k}", v, step)
        return result


def _load_init(model: torch.nn.Module, path: str) -> None:
    """Copy a checkpoint's weights into ``model``; the two must be the same architecture."""
    init = load_checkpoint(path)
    if init.config != model.config:
        raise ValueError(f"init {path}: its config differs from the run's model "
                         f"({_config_difference(init.config, model.config)})")
    model.load_state_dict(init.state_dict())


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
    """The run's most advanced training checkpoint (stage 2 before stage 1) as a model folder.

    For looking at, or shipping, a run that was stopped before its final ``model/``. Refuses
    to overwrite ``out``.
    """
    ckpt_dir = Path(cfg.run_dir) / "checkpoints"
    for stage in (2, 1):
        path = ckpt_dir / f"stage{stage}_last.pt"
        if path.exists():
            break
    else:
        raise FileNotFoundError(f"{ckpt_dir}: no training checkpoint to export")
    state = torch.load(path, map_location="cpu", weights_only=True)
    probe = build(cfg.model, **cfg.model_args)
    model = build(cfg.model, **{**cfg.model_args, "stage": stage}) if _two_stage(probe) else probe
    model.load_state_dict(state["model"])
    model.eval()
    return save_checkpoint(model, out)


def train(cfg: TrainConfig, *, resume: bool = False, progress: bool = True) -> Path:
    return Trainer(cfg, resume=resume, progress=progress).run()
