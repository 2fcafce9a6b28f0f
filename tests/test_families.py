"""Every registered preset through the same checks, and a family written outside vsrdb.

The checks use only the family interface (``RestorationModel``), so a new family passes them
by implementing it: shapes, every parameter trained in every stage, a bit-exact checkpoint
round trip, and streaming restoration equal to the plain per-window call.
"""

import csv
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import vsrdb
from conftest import synth_photo_dataset
from vsrdb.cli import main
from vsrdb.data.flow import initial_flows
from vsrdb.data.windows import window_indices
from vsrdb.restore import Restorer
from vsrdb.train.losses import LossWeights

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
    for stage in probe.training_stages(LossWeights()):
        torch.manual_seed(0)
        model = vsrdb.build(name, **stage.build_args).train()
        parts = model.trainable_parts(stage)
        optims = [torch.optim.Adam(p.parameters(), lr=1e-3) for _, p in parts]
        batch = _batch(model, stage.window)
        for _ in range(2):
            loss, terms = model.training_loss(model, batch, stage, LossWeights())
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

USER_FAMILY = '''
"""A family written outside vsrdb: three frames stacked, two convolutions, a pixel shuffle."""
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


class Tiny(RestorationModel):
    preset = "tiny-user"

    def __init__(self, config=None):
        super().__init__()
        self.config = config or TinyConfig()
        c, t, s = self.config.channels, self.config.window, self.config.scale
        self.body = nn.Sequential(nn.Conv2d(3 * t, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, 3 * s * s, 3, padding=1))

    @property
    def frames(self):
        return FrameNeed("window", self.config.window)

    def inference_values_per_pixel(self):
        return 4 * self.config.channels

    def forward(self, lr, hr=None):
        b, c, t, h, w = lr.shape
        up = F.interpolate(lr[:, :, t // 2], scale_factor=self.scale, mode="bilinear", align_corners=False)
        return {"output": up + F.pixel_shuffle(self.body(lr.reshape(b, c * t, h, w)), self.scale)}

    def restore(self, lr, *, features=None, flows=None):
        return self(lr)["output"]

    def training_stages(self, weights):
        return [TrainingStage("main", "model", self.config.window)]

    def training_loss(self, forward, batch, stage, weights):
        c = batch["lr"].shape[2] // 2
        loss = F.l1_loss(forward(batch["lr"])["output"], batch["hr"][:, :, c])
        return loss, {"restore": loss.detach(), "total": loss.detach()}


@vsrdb.register_model("tiny-user")
def tiny_user(**overrides):
    return from_preset(Tiny, TinyConfig(), overrides)
'''


def test_a_family_in_a_users_file_trains_restores_and_evaluates(tmp_path):
    family = tmp_path / "my_family.py"
    family.write_text(textwrap.dedent(USER_FAMILY))
    data = synth_photo_dataset(tmp_path, (64, 80), photo_size=(48, 64))
    cfg = {"model": "tiny-user", "model_args": {"channels": 6},
           "data": {"layout": "reds", "root": str(data), "val_root": str(data), "patch": 8, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": None},
           "stages": {"main": {"iterations": 6, "lr": 1e-3}}, "run_dir": str(tmp_path / "run"),
           "checkpoint_every": 3, "val_every": 6, "log_every": 1, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    # A fresh process, as a user runs it: vsrdb knows nothing of the family until told.
    run = [sys.executable, "-m", "vsrdb", "--model-module", str(family)]
    done = subprocess.run([*run, "train", str(tmp_path / "c.yaml"), "--quiet"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with open(tmp_path / "run" / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["stage"] for r in rows if r["total"]] == ["main"] * 6 and "lr_model" in rows[0]
    assert any(r["val_psnr"] for r in rows)
    weights = tmp_path / "run" / "model"
    assert json.loads((weights / "config.json").read_text())["model"] == "tiny-user"

    frames = tmp_path / "in"
    frames.mkdir()
    for i in range(4):
        Image.fromarray((np.random.default_rng(i).random((12, 16, 3)) * 255).astype(np.uint8)).save(frames / f"{i}.png")
    done = subprocess.run([*run, "restore", str(frames), "-o", str(tmp_path / "out"), "--weights", str(weights),
                           "--quiet", "--threads", "1", "--precision", "fp32"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    outs = sorted((tmp_path / "out").glob("*.png"))
    assert len(outs) == 4 and Image.open(outs[0]).size == (64, 48)

    done = subprocess.run([*run, "evaluate", "--data", str(data), "--layout", "reds", "--weights", str(weights),
                           "--json", str(tmp_path / "e.json"), "--quiet", "--precision", "fp32"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    scores = json.loads((tmp_path / "e.json").read_text())
    assert scores["methods"]["run/model"]["parameters"] == 6 * 9 * 9 + 6 + 48 * 6 * 9 + 48
    # Without the module the checkpoint names a family vsrdb does not know, and says how to fix that.
    done = subprocess.run([sys.executable, "-m", "vsrdb", "info", str(weights)], capture_output=True, text=True)
    assert done.returncode == 2 and "unknown model 'tiny-user'" in done.stderr and "--model-module" in done.stderr


def test_a_missing_model_module_is_one_line(tmp_path, capsys):
    assert main(["--model-module", str(tmp_path / "nope.py"), "info"]) == 2
    assert "nope.py: model module not found" in capsys.readouterr().err
