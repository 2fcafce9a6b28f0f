"""HOFFR and JFFRA: shapes, gradients, their ops, the temporal loss, restore and train."""

import csv
import math

import pytest
import torch
import torch.nn.functional as F
import yaml

from vsrdb.checkpoints import load_checkpoint, save_checkpoint
from vsrdb.cli import main
from vsrdb.data.flow import initial_flows
from vsrdb.models import build
from vsrdb.models.hoffr import hoffr_loss
from vsrdb.ops import l1_cost_volume, window_attention
from vsrdb.ops.losses import temporal_consistency_loss
from vsrdb.restore import Restorer

from conftest import synth_photo_dataset

TINY = {"hoffr": dict(dim=8, num_db_blocks=1, num_sr_blocks=1, num_rcab=1, reduction=4, flow_dim=4, flow_levels=2),
        "jffra": dict(dims=(6, 8), num_heads=2, window=4, radius=2)}


def tiny(name: str, **kw):
    return build(name, **{**TINY[name], **kw})


# ----------------------------------------------------------------------------- ops

def test_window_attention_matches_naive_attention_per_window():
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 4, 6, 10) for _ in range(3))  # 10 is not a multiple of 4: padded
    out = window_attention(q, k, v, window=4, heads=2)
    # naive: pixel (y, x) attends to every pixel of its window, per head
    qp, kp, vp = (F.pad(z, (0, 2, 0, 2), mode="replicate") for z in (q, k, v))
    y, x = 5, 9
    wy, wx = slice(4, 8), slice(8, 12)
    for head in range(2):
        ch = slice(2 * head, 2 * head + 2)
        keys = kp[0, ch, wy, wx].reshape(2, -1)
        vals = vp[0, ch, wy, wx].reshape(2, -1)
        att = torch.softmax(qp[0, ch, y, x] @ keys / math.sqrt(2), dim=-1)
        assert torch.allclose(out[0, ch, y, x], vals @ att, atol=1e-5)


def test_cost_volume_is_the_l1_distance_at_each_offset():
    torch.manual_seed(2)
    ref, other = torch.randn(1, 5, 9, 11), torch.randn(1, 5, 9, 11)
    cv = l1_cost_volume(ref, other, radius=2)
    assert cv.shape == (1, 25, 9, 11)
    h, w, dy, dx = 4, 6, 1, -2  # offset (l, m) = (1, -2) is channel (l + 2) * 5 + (m + 2)
    expected = (ref[0, :, h, w] - other[0, :, h + dy, w + dx]).abs().mean()
    assert torch.isclose(cv[0, (dy + 2) * 5 + dx + 2, h, w], expected)
    assert torch.allclose(cv[:, 12], (ref - other).abs().mean(1))  # zero offset
    # a shifted copy costs zero exactly at the shift
    shifted = torch.roll(ref, shifts=(1, 2), dims=(2, 3))
    assert l1_cost_volume(ref, shifted, 2)[0, (1 + 2) * 5 + 2 + 2, 2:7, 2:7].abs().max() < 1e-6


# ----------------------------------------------------------------------------- shapes and gradients

@pytest.mark.parametrize("t,size", [(2, (16, 20)), (3, (13, 9)), (5, (8, 24))])
def test_hoffr_shapes(t, size):
    model = tiny("hoffr", unroll=t)
    h, w = size
    out = model(torch.rand(2, 3, t, h, w), torch.rand(2, 3, t, 4 * h, 4 * w))
    assert out["outputs"].shape == (2, 3, t, 4 * h, 4 * w)
    assert out["output"].shape == (2, 3, 4 * h, 4 * w)
    assert out["deblurred"].shape == (2, 3, t, h, w)
    assert [tuple(f.shape[-2:]) for f in out["flows"]] == [(math.ceil(h / 2), math.ceil(w / 2)), (h, w)]
    assert model.restore(torch.rand(1, 3, t, h, w)).shape == (1, 3, 4 * h, 4 * w)


@pytest.mark.parametrize("t,size", [(3, (16, 20)), (3, (13, 9)), (5, (10, 12))])
def test_jffra_shapes(t, size):
    model = tiny("jffra", num_seq=t)
    h, w = size
    lr = torch.rand(2, 3, t, h, w)
    flows = initial_flows(lr, model.input_flow)  # the caller computes the estimator's flow
    out = model(lr, flows=flows)
    assert out["outputs"].shape == (2, 3, t, 4 * h, 4 * w)
    assert out["flows"].shape == (2, 2, t, h, w)
    assert torch.equal(out["flows"][:, :, t // 2], torch.zeros(2, 2, h, w))  # the centre never moves
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model.restore(lr, flows=flows), model(lr, flows=flows)["output"], atol=1e-5)


def test_jffra_without_its_input_flow_says_what_to_pass():
    with pytest.raises(ValueError, match="initial_flows"):
        tiny("jffra")(torch.rand(1, 3, 3, 8, 8))


def test_jffra_rejects_an_even_window():
    with pytest.raises(ValueError, match="odd"):
        build("jffra", num_seq=4)


def _batch(t: int, h: int = 12, w: int = 12):
    torch.manual_seed(3)
    return (torch.rand(2, 3, t, h, w), torch.rand(2, 3, t, 4 * h, 4 * w), torch.rand(2, 3, t, h, w),
            torch.randn(2, 2, t, h, w))


def test_hoffr_flow_loss_rewards_the_true_motion():
    """The multi-scale warping loss is lower when POF's flow is the true shift of the sharp frames."""
    model = tiny("hoffr", unroll=2)
    torch.manual_seed(4)
    base = F.interpolate(torch.rand(1, 3, 6, 6), size=(16, 16), mode="bicubic", align_corners=False)
    frame1 = torch.roll(base, shifts=1, dims=3)  # frame 1 = frame 0 moved right by 1 px
    lr_sharp = torch.stack((base, frame1), dim=2)
    hr = torch.zeros(1, 3, 2, 64, 64)
    out = model(lr_sharp, hr)

    def flow_term(dx: float) -> float:
        flows = [torch.zeros_like(f) for f in out["flows"]]
        for f in flows:
            f[:, 0] = -dx * f.shape[-1] / 16  # frame 1 pixel p came from frame 0 at p - 1
        return hoffr_loss({**out, "flows": flows}, hr=hr, lr_sharp=lr_sharp)[1]["flow_warp"].item()

    assert flow_term(1.0) < 0.5 * flow_term(0.0)  # not 0: the wrapped column and the coarse level


# ----------------------------------------------------------------------------- temporal loss

def _frames(seed: int = 5, h: int = 24, w: int = 24):
    torch.manual_seed(seed)
    return F.interpolate(torch.rand(1, 3, h // 4, w // 4), size=(h, w), mode="bicubic", align_corners=False).clamp(0, 1)


def test_temporal_loss_is_zero_for_identical_warped_frames():
    gt = _frames()
    flow = torch.zeros(1, 2, 24, 24)
    flow[:, 0] = 2.0  # neighbour = frame moved left by 2 px
    gt_nb = torch.roll(gt, shifts=-2, dims=3)
    restored = gt * 0.9 + 0.05
    restored_nb = torch.roll(restored, shifts=-2, dims=3)
    loss = temporal_consistency_loss(restored, restored_nb, gt, gt_nb, flow)
    assert loss.item() < 1e-6


def test_temporal_loss_grows_with_misalignment():
    gt = _frames()
    flow = torch.zeros(1, 2, 24, 24)
    values = []
    for shift in (0, 1, 2, 4):
        restored_nb = torch.roll(gt, shifts=shift, dims=3)  # restored neighbour drifts; the truth is still
        values.append(temporal_consistency_loss(gt, restored_nb, gt, gt, flow).item())
    assert values[0] < 1e-7
    assert values[0] < values[1] < values[2] < values[3]


def test_temporal_loss_mask_suppresses_occluded_regions():
    gt = _frames()
    flow = torch.zeros(1, 2, 24, 24)
    gt_nb = gt.clone()
    gt_nb[..., 8:16, 8:16] = 1 - gt_nb[..., 8:16, 8:16]  # an object appears: occluded in the pair
    restored = gt.clone()
    flicker = restored.clone()
    flicker[..., 8:16, 8:16] += 0.3  # the restoration differs only where the frames truly differ
    occluded = temporal_consistency_loss(restored, flicker, gt, gt_nb, flow).item()
    flicker_still = restored.clone()
    flicker_still[..., 0:8, 0:8] += 0.3  # the same flicker where the truth is still
    still = temporal_consistency_loss(restored, flicker_still, gt, gt_nb, flow).item()
    assert still > 0.01
    assert occluded < 0.01 * still


def test_temporal_loss_default_weight_is_the_papers_for_jffra_only():
    """JFFRA's loss carries its temporal terms at 0.2 by default; FMA-Net widens its window for
    them only when they are switched on."""
    jffra = tiny("jffra")
    lr, hr, lr_sharp, flow = _batch(3)
    batch = {"lr": lr, "hr": hr, "lr_sharp": lr_sharp, "flow": flow, "input_flow": initial_flows(lr, "dis")}
    [stage] = jffra.training_stages(jffra.loss_weights())
    loss, terms = jffra.training_loss(jffra, batch, stage, jffra.loss_weights())
    assert torch.isclose(loss, terms["restore"] + 0.2 * terms["temporal"])
    loss, terms = jffra.training_loss(jffra, batch, stage, jffra.loss_weights({"temporal": 0.0}))
    assert "temporal" not in terms and torch.equal(loss, terms["restore"])
    fmanet = build("fmanet-tiny")
    assert [s.window for s in fmanet.training_stages(fmanet.loss_weights())] == [3, 3]
    assert [s.window for s in fmanet.training_stages(fmanet.loss_weights({"temporal": 0.5}))] == [3, 5]


# ----------------------------------------------------------------------------- restore and checkpoints

def test_recurrent_restorer_equals_the_unrolled_model():
    model = tiny("hoffr", unroll=5).eval()
    torch.manual_seed(6)
    frames = [torch.rand(3, 10, 14) for _ in range(5)]
    streamed = list(Restorer(model).run(iter(frames)))
    with torch.no_grad():
        unrolled = model(torch.stack(frames, dim=1)[None])["outputs"][0]
    assert len(streamed) == 5
    for i, out in enumerate(streamed):
        assert torch.allclose(out, unrolled[:, i], atol=1e-5)
    tiled = list(Restorer(model, tile=8, overlap=3).run(iter(frames)))
    assert all(a.shape == b.shape for a, b in zip(tiled, streamed))
    assert max((a - b).abs().mean().item() for a, b in zip(tiled, streamed)) < 0.05


def test_jffra_restorer_gives_the_windowed_centre_frames(tmp_path):
    model = tiny("jffra").eval()
    frames = [torch.rand(3, 12, 12) for _ in range(4)]
    outs = list(Restorer(model).run(iter(frames)))
    with torch.no_grad():
        window = torch.stack(frames[0:3], dim=1)[None]
        flows = initial_flows(window, model.input_flow)
        assert torch.allclose(outs[1], model.restore(window, flows=flows)[0], atol=1e-5)
    save_checkpoint(model, tmp_path / "j")
    again = load_checkpoint(tmp_path / "j")
    assert again.config == model.config
    with torch.no_grad():
        assert torch.equal(again.restore(window, flows=flows), model.restore(window, flows=flows))


# ----------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth_photo_dataset(tmp_path_factory.mktemp("data"), (96, 112), photo_size=(48, 64))


def _train(tmp_path, dataset, model: str, model_args: dict, stages: dict, **loss):
    cfg = {"model": model, "model_args": model_args,
           "data": {"layout": "reds", "root": str(dataset), "val_root": str(dataset), "patch": 8, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": "dis"},
           "stages": {k: {"iterations": v} for k, v in stages.items()}, "loss": loss,
           "run_dir": str(tmp_path / "run"), "checkpoint_every": 2, "val_every": 4, "log_every": 1, "threads": 1}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["train", str(path), "--quiet"]) == 0
    with open(tmp_path / "run" / "log.csv") as f:
        return [r for r in csv.DictReader(f)]


@pytest.mark.parametrize("name", ["hoffr", "jffra"])
def test_train_and_evaluate_other_models(tmp_path, dataset, name, capsys):
    args = {k: list(v) if isinstance(v, tuple) else v for k, v in TINY[name].items()}
    rows = _train(tmp_path, dataset, name, {**args, **({"unroll": 3} if name == "hoffr" else {})}, {"main": 4})
    steps = [r for r in rows if r["total"]]
    assert {r["stage"] for r in steps} == {"main"}  # the family's one stage
    assert len(steps) == 4 and all(math.isfinite(float(r["total"])) for r in steps)
    key = "flow_warp" if name == "hoffr" else "temporal"
    assert all(float(r[key]) > 0 for r in steps)
    assert any(r["val_psnr"] for r in rows)
    model = load_checkpoint(tmp_path / "run" / "model")
    assert model.preset == name
    assert main(["evaluate", "--data", str(dataset), "--layout", "reds", "--weights", str(tmp_path / "run" / "model"),
                 "--baseline", "bicubic", "--json", str(tmp_path / "e.json"), "--quiet"]) == 0
    import json

    result = json.loads((tmp_path / "e.json").read_text())
    entry = next(v for k, v in result["methods"].items() if k != "bicubic")
    assert entry["parameters"] == sum(p.numel() for p in model.parameters())
    assert entry["seconds_per_frame"] > 0


def test_fmanet_trains_with_the_temporal_loss_switch(tmp_path, dataset):
    rows = _train(tmp_path, dataset, "fmanet-tiny", {}, {"netd": 3, "joint": 4}, temporal=0.2)
    stage2 = [r for r in rows if r["total"] and r["stage"] == "joint"]
    stage1 = [r for r in rows if r["total"] and r["stage"] == "netd"]
    assert stage1 and all(not r["temporal"] for r in stage1)  # stage 1 restores nothing
    assert stage2 and all(float(r["temporal"]) > 0 for r in stage2)
    for r in stage2:  # the total includes 0.2 x the temporal term
        parts = float(r["restore"]) + 0.1 * float(r["loss_d"]) + 0.1 * float(r["lr_warp"]) + 0.1 * float(r["anchor_r"])
        assert abs(float(r["total"]) - (parts + 0.2 * float(r["temporal"]))) < 1e-5
