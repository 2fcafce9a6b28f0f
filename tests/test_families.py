"""Every registered preset through the same checks, and a family written outside vsrdb.

The checks use only the family interface (``RestorationModel``), so a new family passes them
by implementing it: shapes, every parameter trained in every stage, a bit-exact checkpoint
round trip, and streaming restoration equal to the plain per-window call.
"""

import csv
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vsrdb
from vsrdb.cli import main
from vsrdb.data.flow import initial_flows
from vsrdb.data.windows import window_indices
from vsrdb.restore import Restorer

from conftest import synth_photo_dataset

H, W = 8, 12


def _inputs(model, lr):
    return {"flows": initial_flows(lr, model.input_flow)} if model.input_flow else {}


def _batch(model, window: int, b: int = 1) -> dict:
    gen = torch.Generator().manual_seed(3)
    s = model.scale
    lr = torch.rand(b, 3, window, H, W, generator=gen)
    batch = {"lr": lr, "hr": torch.rand(b, 3, window, s * H, s * W, generator=gen),
             "lr_sharp": torch.rand(b, 3, window, H, W, generator=gen),
             "flow": torch.randn(b, 2, window, H, W, generator=gen),
             # exposure levels 1-5 (for families that learn from them: FMA-Net++'s ETE); two each
             "exposure": torch.arange(b * window).remainder(5).add(1).reshape(b, window)}
    if model.input_flow:
        batch["input_flow"] = initial_flows(lr, model.input_flow)
    for key in model.training_flows:  # FMA-Net++: each frame to its neighbours
        batch[key] = torch.randn(b, 4, window, H, W, generator=gen)
    return batch


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_preset_restores_a_window_at_its_scale(name):
    model = vsrdb.build(name).eval()
    assert model.preset == name and model.frames.mode in ("window", "recurrent", "sequence")
    assert model.channel_order in ("RGB", "BGR") and model.min_size <= min(H, W)
    lr = torch.rand(2, 3, model.frames.length, H, W)
    with torch.no_grad():
        out = model.restore(lr, **_inputs(model, lr))
    assert out.shape == (2, 3, model.scale * H, model.scale * W) and torch.isfinite(out).all()
    assert model.inference_bytes(H, W) > 0
    assert model.inference_bytes(2 * H, 2 * W) > 3 * model.inference_bytes(H, W)  # grows with the area


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_every_parameter_is_trained_by_a_stage(name):
    """Each stage's networks all get gradients, and the stages together train the whole model
    (a stage may freeze what an earlier one trained: FMA-Net++'s ETE). Zero-initialised heads
    (flow residuals) pass no gradient to the layers before them at step 0, so two Adam steps
    are taken."""
    probe = vsrdb.build(name)
    trained: set[str] = set()
    for stage in probe.training_stages(probe.loss_weights()):
        torch.manual_seed(0)
        model = vsrdb.build(name, **stage.build_args).train()
        parts = model.trainable_parts(stage)
        optims = [torch.optim.Adam(p.parameters(), lr=1e-3) for _, p in parts]
        batch = _batch(model, stage.window)
        for _ in range(2):
            loss, terms = model.training_loss(model, batch, stage, probe.loss_weights())
            assert torch.isfinite(loss) and "total" in terms
            for o in optims:
                o.zero_grad()
            loss.backward()
            for o in optims:
                o.step()
        owned = {id(p) for _, part in parts for p in part.parameters()}
        names = [n for n, p in model.named_parameters() if id(p) in owned]
        missing = [n for n, p in model.named_parameters()
                   if id(p) in owned and (p.grad is None or not p.grad.abs().max() > 0)]
        assert not missing, f"{name}/{stage.name}: no gradient for {missing[:5]}"
        frozen_with_grad = [n for n, p in model.named_parameters() if id(p) not in owned and p.grad is not None]
        assert not frozen_with_grad, f"{name}/{stage.name}: gradients reach frozen {frozen_with_grad[:5]}"
        trained.update(names)
    assert trained == {n for n, _ in probe.named_parameters()}, f"{name}: parameters no stage trains"


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_checkpoint_round_trip_is_bit_exact(name, tmp_path):
    model = vsrdb.build(name).eval()
    vsrdb.save_checkpoint(model, tmp_path / "m")
    again = vsrdb.load_checkpoint(tmp_path / "m")
    assert again.preset == name and again.config == model.config
    lr = torch.rand(1, 3, model.frames.length, H, W)
    inputs = _inputs(model, lr)
    with torch.no_grad():
        assert torch.equal(again.restore(lr, **inputs), model.restore(lr, **inputs))


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_streaming_restore_equals_the_plain_call(name):
    model = vsrdb.build(name).eval()
    n, t = 4, model.frames.length
    frames = [torch.rand(3, H, W) for _ in range(n)]
    streamed = list(Restorer(model).run(iter(frames)))
    assert len(streamed) == n
    with torch.no_grad():
        if model.frames.mode == "sequence":  # chunks with enough context equal the whole-sequence forward
            whole = model.restore_sequence(torch.stack(frames, dim=1)[None])[0]
            assert all(torch.allclose(out, whole[:, i], atol=1e-5) for i, out in enumerate(streamed))
            return
        for i, out in enumerate(streamed):
            if model.frames.mode == "window":
                window = torch.stack([frames[j] for j in window_indices(i, t, n)], dim=1)[None]
            elif 2 * i + 1 <= n:  # recurrent: restore(frames 0..2i) is frame i with its whole past
                window = torch.stack(frames[:2 * i + 1], dim=1)[None]
            else:
                continue
            assert torch.allclose(out, model.restore(window, **_inputs(model, window))[0], atol=1e-5), i


# ----------------------------------------------------------------------------- a family of one's own

USER_FAMILY = """
\"\"\"A family written outside vsrdb: three frames stacked, convolutions, a pixel shuffle; trained
in two stages of its own (a coarse body, then a refining head on it), with loss weights and
loss terms of its own.\"\"\"
from dataclasses import dataclass

import torch.nn as nn
import torch.nn.functional as F

import vsrdb
from vsrdb.models import FrameNeed, RestorationModel, TrainingStage, from_preset


@dataclass(frozen=True)
class TinyConfig:
    channels: int = 8
    window: int = 3
    scale: int = 4
    refine: bool = True


@dataclass(frozen=True)
class TinyLoss:
    edge_agreement: float = 0.5   # weight of the gradient term
    sharpness: float = 0.1        # the fine stage's extra term


def _grad(x):
    return x[..., 1:, :] - x[..., :-1, :], x[..., :, 1:] - x[..., :, :-1]


class Tiny(RestorationModel):
    preset = "tiny-user"
    loss_weights_type = TinyLoss

    def __init__(self, config=None):
        super().__init__()
        self.config = config or TinyConfig()
        c, t, s = self.config.channels, self.config.window, self.config.scale
        self.body = nn.Sequential(nn.Conv2d(3 * t, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 3 * s * s, 3, padding=1))
        self.head = nn.Conv2d(3, 3, 3, padding=1) if self.config.refine else None

    @property
    def frames(self):
        return FrameNeed("window", self.config.window)

    def inference_values_per_pixel(self):
        return 4 * self.config.channels

    def forward(self, lr, hr=None):
        b, c, t, h, w = lr.shape
        up = F.interpolate(lr[:, :, t // 2], scale_factor=self.scale, mode="bilinear", align_corners=False)
        out = up + F.pixel_shuffle(self.body(lr.reshape(b, c * t, h, w)), self.scale)
        return {"output": out + self.head(out) if self.head is not None else out}

    def restore(self, lr, *, features=None, flows=None):
        return self(lr)["output"]

    def training_stages(self, weights):
        w = self.config.window
        return [TrainingStage("coarse", "stage1_coarse", w, {"refine": False}, replaced_by_init=True, legacy_key=None),
                TrainingStage("fine", "model", w, legacy_key=None)]

    def trainable_parts(self, stage):
        return [("body", self.body)] + ([("head", self.head)] if self.head is not None else [])

    def start_stage(self, stage, previous):
        if previous is not None:
            self.body.load_state_dict(previous.body.state_dict())

    def loss_terms(self, stage, weights):
        return ("pixel_fidelity", "edge_agreement") + (("sharpness",) if stage.name == "fine" else ())

    def training_loss(self, forward, batch, stage, weights):
        c = batch["lr"].shape[2] // 2
        out, target = forward(batch["lr"])["output"], batch["hr"][:, :, c]
        terms = {"pixel_fidelity": F.l1_loss(out, target),
                 "edge_agreement": sum(F.l1_loss(a, b) for a, b in zip(_grad(out), _grad(target)))}
        loss = terms["pixel_fidelity"] + weights.edge_agreement * terms["edge_agreement"]
        if stage.name == "fine":
            terms["sharpness"] = -sum(g.abs().mean() for g in _grad(out))
            loss = loss + weights.sharpness * terms["sharpness"]
        return loss, {k: v.detach() for k, v in terms.items()}


@vsrdb.register_model("tiny-user")
def tiny_user(**overrides):
    return from_preset(Tiny, TinyConfig(), overrides)
"""


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_family_in_a_users_file_trains_restores_and_evaluates(tmp_path):
    family = tmp_path / "my_family.py"
    family.write_text(textwrap.dedent(USER_FAMILY))
    data = synth_photo_dataset(tmp_path, (64, 80), photo_size=(48, 64))
    cfg = {"model": "tiny-user", "model_args": {"channels": 6},
           "data": {"layout": "reds", "root": str(data), "val_root": str(data), "patch": 8, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": None},
           "stages": {"coarse": {"iterations": 4, "lr": 1e-3}, "fine": {"iterations": 4, "lr": 1e-3}},
           "loss": {"edge_agreement": 0.25}, "run_dir": str(tmp_path / "run"),
           "checkpoint_every": 2, "val_every": 4, "log_every": 1, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    # Fresh processes, as a user runs them: vsrdb knows nothing of the family until told.
    run = [sys.executable, "-m", "vsrdb", "--model-module", str(family)]
    done = subprocess.run([*run, "train", str(tmp_path / "c.yaml"), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0])
    assert header[:4] == ["stage", "step", "lr_body", "lr_head"] and "seconds" in header
    assert {"pixel_fidelity", "edge_agreement", "sharpness"} <= set(header)
    assert not {"total", "recon", "anchor_d"} & set(header)  # nothing of FMA-Net's vocabulary
    logged = [r for r in rows if r["pixel_fidelity"]]
    assert [r["stage"] for r in logged] == ["coarse"] * 4 + ["fine"] * 4
    assert all(r["sharpness"] for r in logged[4:]) and not any(r["sharpness"] for r in logged[:4])
    assert all(r["edge_agreement"] and not r["lr_head"] for r in logged[:4])
    assert any(r["val_psnr"] for r in rows)
    resolved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert resolved["loss"] == {"edge_agreement": 0.25, "sharpness": 0.1}  # the family's weights, resolved
    weights = tmp_path / "run" / "model"
    assert json.loads((weights / "config.json").read_text())["model"] == "tiny-user"
    assert (tmp_path / "run" / "stage1_coarse" / "config.json").exists()

    # The same run on two processes (torchrun, gloo) follows the same trajectory.
    two = {**cfg, "run_dir": str(tmp_path / "run2")}
    (tmp_path / "c2.yaml").write_text(yaml.safe_dump(two))
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={_free_port()}", "-m", "vsrdb", "--model-module", str(family),
                           "train", str(tmp_path / "c2.yaml"), "--quiet"],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=180)
    # torchrun's summary fills the tail; a rank's own error (a C++ `what()`, a traceback) comes before it
    assert done.returncode == 0, done.stderr[:6000] + "\n...\n" + done.stderr[-1500:]
    with open(tmp_path / "run2" / "log.csv") as f:
        rows2 = [r for r in csv.DictReader(f) if r["pixel_fidelity"]]
    assert [(r["stage"], r["step"]) for r in rows2] == [(r["stage"], r["step"]) for r in logged]
    for a, b in zip(logged, rows2):
        for term in ("pixel_fidelity", "edge_agreement"):
            assert abs(float(a[term]) - float(b[term])) <= 1e-5 * max(1.0, abs(float(a[term])))

    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((12, 16, 3)) * 255).astype(np.uint8)).save(frames / f"{i}.png")
    done = subprocess.run([*run, "restore", str(frames), "-o", str(tmp_path / "out"), "--weights", str(weights),
                           "--quiet", "--threads", "1", "--precision", "fp32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == 4 and Image.open(outs[0]).size == (64, 48)
    # bf16, forced (what --precision auto picks on an AMX or AVX512-BF16 CPU): the family knows
    # nothing of vsrdb's precision rules, so it gets its frames in the dtype its weights run in.
    done = subprocess.run([*run, "restore", str(frames), "-o", str(tmp_path / "out16"), "--weights", str(weights),
                           "--quiet", "--threads", "1", "--precision", "bf16"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for a, b in zip(outs, sorted((tmp_path / "out16").glob("*.png"))):
        diff = np.abs(np.asarray(Image.open(a), np.float64) - np.asarray(Image.open(b), np.float64))
        assert diff.mean() < 2.0, diff.mean()  # bf16's rounding, in 8-bit levels

    done = subprocess.run([*run, "evaluate", "--data", str(data), "--layout", "reds", "--weights", str(weights),
                           "--json", str(tmp_path / "e.json"), "--quiet", "--precision", "fp32"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["methods"]["run/model"]["parameters"] == 6 * 9 * 9 + 6 + 48 * 6 * 9 + 48 + 3 * 3 * 9 + 3
    # Without the module the checkpoint names a family vsrdb does not know, and says how to fix that.
    done = subprocess.run([sys.executable, "-m", "vsrdb", "info", str(weights)], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown model 'tiny-user'" in done.stderr and "--model-module" in done.stderr


def test_a_family_that_declares_no_terms_logs_its_first_steps_and_refuses_a_change(tmp_path, capsys):
    """Without loss_terms(), log.csv takes the first step's terms; a stage that then logs others
    is a one-line error, not a traceback (the file is never rewritten while training)."""
    source = textwrap.dedent(USER_FAMILY).replace("def loss_terms(", "def _unused_loss_terms(")
    family = tmp_path / "undeclared.py"
    family.write_text(source.replace('"tiny-user"', '"tiny-undeclared"'))
    data = synth_photo_dataset(tmp_path, (64, 80), photo_size=(48, 64))
    cfg = {"model": "tiny-undeclared",
           "data": {"layout": "reds", "root": str(data), "val_root": str(data), "patch": 8, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": None},
           "stages": {"coarse": {"iterations": 2}, "fine": {"iterations": 2}}, "run_dir": str(tmp_path / "run"),
           "checkpoint_every": 1, "val_every": 10, "log_every": 1, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["--model-module", str(family), "train", str(tmp_path / "c.yaml"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "stage fine logs loss terms sharpness" in err[0] and "loss_terms()" in err[0], err
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[-5:] == ["pixel_fidelity", "edge_agreement", "val_psnr", "val_ssim", "val_bicubic_psnr"]
    assert [r["stage"] for r in rows if r["pixel_fidelity"]] == ["coarse", "coarse"]
    # A loss weight the family does not have is named, before training.
    (tmp_path / "d.yaml").write_text(yaml.safe_dump({**cfg, "loss": {"edge": 1.0}, "run_dir": str(tmp_path / "r2")}))
    assert main(["--model-module", str(family), "train", str(tmp_path / "d.yaml"), "--quiet"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "loss.edge: not a loss weight of tiny-undeclared (its weights: edge_agreement, sharpness)" in line


def test_a_missing_model_module_is_one_line(tmp_path, capsys):
    assert main(["--model-module", str(tmp_path / "nope.py"), "info"]) == 2
    assert "nope.py: model module not found" in capsys.readouterr().err
