"""FMA-Net++: shapes, ETM, the ETE's contrastive loss, FGDF re-degradation, chunked restoration."""

import pytest
import torch

import vsrdb
from vsrdb.models.family import RestorationModel
from vsrdb.models.fmanetpp import ExposureModulation, degrade, supervised_contrastive_loss
from vsrdb.restore import Restorer


def test_full_preset_has_the_papers_parameter_count():
    n = sum(p.numel() for p in vsrdb.build("fmanetpp").parameters())
    assert abs(n - 12.8e6) <= 0.05 * 12.8e6, n


@pytest.mark.parametrize("size", [(13, 11), (8, 17)])
def test_shapes_for_ten_frames_and_odd_sizes(size):
    h, w = size
    model = vsrdb.build("fmanetpp-cpu").eval()
    lr, hr = torch.rand(2, 3, 10, h, w), torch.rand(2, 3, 10, 4 * h, 4 * w)
    with torch.no_grad():
        out = model(lr, hr)
    k2 = model.config.ds_kernel_size ** 2
    assert out["output"].shape == (2, 3, 10, 4 * h, 4 * w)
    assert out["recon"].shape == (2, 3, 10, h, w)
    assert out["image_flow"].shape == (2, 6, 10, h, w) and out["kernels_d"].shape == (2, 3 * k2, 10, h, w)
    assert out["embedding"].shape == (2, 10, model.config.embed_dim)
    assert out["hr_warp"].shape == (2, 3, 2, 10, 4 * h, 4 * w)


def test_etm_is_the_identity_at_zero_alpha_and_beta_and_modulates_otherwise():
    etm = ExposureModulation(8, 6)
    feat, u = torch.randn(4, 6, 5, 5), torch.randn(4, 8)
    assert torch.equal(etm(feat, u), feat)  # zero-initialised last layer: alpha = beta = 0
    with torch.no_grad():
        etm.mlp[-1].bias[:6] = 1.0   # alpha = 1: doubles the features
        etm.mlp[-1].bias[6:] = 0.5   # beta = 0.5
    assert torch.allclose(etm(feat, u), 2 * feat + 0.5)


def test_contrastive_loss_is_lower_for_embeddings_grouped_by_exposure():
    torch.manual_seed(0)
    labels = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    centres = torch.randn(5, 16)
    grouped = centres[labels - 1] + 0.05 * torch.randn(10, 16)
    shuffled = grouped[torch.tensor([0, 2, 4, 6, 8, 1, 3, 5, 7, 9])]  # the same points, wrong labels
    good = supervised_contrastive_loss(grouped, labels, 0.5)
    bad = supervised_contrastive_loss(shuffled, labels, 0.5)
    assert good < bad - 0.5
    # Eq. S1 by hand for a batch of three: anchors 0 and 1 share a label, anchor 2 has no positive.
    z = torch.nn.functional.normalize(grouped[:3], dim=1)
    sims = z @ z.t() / 0.5
    term0 = -(sims[0, 1] - torch.logsumexp(sims[0, [1, 2]], 0))
    term1 = -(sims[1, 0] - torch.logsumexp(sims[1, [0, 2]], 0))
    got = supervised_contrastive_loss(grouped[:3], torch.tensor([1, 1, 2]), 0.5)
    assert torch.isclose(got, (term0 + term1) / 2, atol=1e-6)
    # bf16 training (autocast) computes it in fp32 all the same.
    with torch.autocast("cpu", torch.bfloat16):
        assert torch.isclose(supervised_contrastive_loss(grouped, labels, 0.5), good, atol=1e-5)


def test_fgdf_with_a_centre_delta_kernel_and_still_frames_is_subsampling():
    """K^D all on frame i's pixel at the kernel's centre, no motion: X_hat is Y_i sampled at stride s."""
    k, s, h, w = 8, 4, 5, 6
    hr = torch.rand(1, 4, 3, s * h, s * w)
    image_flow = torch.zeros(1, 4, 6, h, w)
    image_flow[:, :, 2::3] = 10.0  # visible
    kernels = torch.full((1, 4, 3 * k * k, h, w), -1e4)
    pad = (k - s) // 2
    kernels[:, :, k * k + pad * k + pad] = 1e4  # frame i (the middle of three), offset (pad, pad)
    recon, warped = degrade(hr, image_flow, kernels, s)
    assert torch.allclose(recon, hr[..., ::s, ::s], atol=1e-5)
    # [B, T, (from i+1, from i-1), 3, sH, sW]; at the start, frame 0's "previous" is itself
    assert torch.allclose(warped[:, 0, 1], hr[:, 0], atol=1e-3) and torch.allclose(warped[:, 0, 0], hr[:, 1], atol=1e-3)


@pytest.mark.parametrize("chunk", [1, 4])
def test_streamed_restoration_equals_the_whole_sequence(chunk):
    torch.manual_seed(0)
    model = vsrdb.build("fmanetpp-cpu").eval()
    frames = [torch.rand(3, 10, 12) for _ in range(21)]
    with torch.no_grad():
        whole = model.restore_sequence(torch.stack(frames, dim=1)[None])[0]
    restorer = Restorer(model)
    restorer.sequence_chunk = chunk  # frames pushed at once
    outs = list(restorer.run(iter(frames)))
    assert len(outs) == 21
    assert max((o - whole[:, i]).abs().max().item() for i, o in enumerate(outs)) < 1e-4
    # A resumed segment (frames 9..14, given from 9 - reach) gives the same frames.
    r = model.frames.reach
    part = list(restorer.run(iter(frames[9 - r:]), first=9 - r, start=9, stop=15))
    assert len(part) == 6 and all(torch.allclose(o, whole[:, 9 + i], atol=1e-4) for i, o in enumerate(part))
    # Given from the clip's start, the frames before 9 - reach are skipped: the same frames.
    part = list(restorer.run(iter(frames), start=9, stop=15))
    assert len(part) == 6 and all(torch.allclose(o, whole[:, 9 + i], atol=1e-4) for i, o in enumerate(part))


def test_the_stream_computes_each_frame_once_per_block_and_the_generic_one_matches_it():
    """FMA-Net++'s stream runs every HRBA block on each frame once; the interface's default
    (chunks with reach frames of context, for any sequence family) recomputes but agrees."""
    torch.manual_seed(0)
    model = vsrdb.build("fmanetpp-cpu").eval()
    lr = torch.rand(1, 3, 13, 8, 10)
    frames_seen = []
    hook = model.net_r.blocks[0].register_forward_hook(lambda m, args, out: frames_seen.append(args[0].shape[1]))
    with torch.no_grad():
        whole = model.restore_sequence(lr)[0]
        frames_seen.clear()
        stream = model.sequence_stream(1)
        outs = [o for i in range(13) for o in stream.push(lr[:, :, i:i + 1])]
        assert len(outs) == 13 - model.frames.reach  # each waits for reach frames after it
        outs += stream.finish()
        assert sum(frames_seen) == 13
        hook.remove()
        generic = RestorationModel.sequence_stream(model, 3)
        outs2 = [o for i in range(0, 13, 2) for o in generic.push(lr[:, :, i:i + 2])] + generic.finish()
    for got in (outs, outs2):
        assert len(got) == 13
        assert max((o[0] - whole[:, i]).abs().max().item() for i, o in enumerate(got)) < 1e-4


def test_neighbour_flows_point_to_where_each_pixel_is_in_the_next_and_previous_frames():
    import torch.nn.functional as F

    from vsrdb.data.flow import neighbour_flows

    base = F.interpolate(torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(1)), size=(48, 64),
                         mode="bicubic", align_corners=False).clamp(0, 1)
    frames = torch.stack([torch.roll(base, shifts=2 * i, dims=3)[0] for i in range(3)], dim=1)[None]  # 2 px right
    flows = neighbour_flows(frames)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert flows.shape == (1, 4, 3, 48, 64)
    assert abs(flows[0, 0, 1][inner[1:]].median().item() - 2) < 0.3   # towards i+1: +2 px
    assert abs(flows[0, 2, 1][inner[1:]].median().item() + 2) < 0.3   # towards i-1: -2 px
    assert torch.equal(flows[0, 0:2, 2], torch.zeros(2, 48, 64))      # the last frame has no next


def _gradient_energy(img):
    return ((img[:, 1:] - img[:, :-1]).abs().mean() + (img[:, :, 1:] - img[:, :, :-1]).abs().mean()).item()


def test_exposure_synthesis_blurs_more_at_longer_exposures_and_labels_every_frame(tmp_path):
    import json

    import numpy as np

    from vsrdb.data.datasets import WindowDataset, find_clips
    from vsrdb.data.procedural import procedural_image
    from vsrdb.data.synth import SynthConfig, exposure_trajectory, synthesize
    from vsrdb.video import read_image, to_tensor

    cfg = SynthConfig(clip_frames=4, photo_size=(64, 80), photo_clips=1, photo_subframes=10, max_shift=12.0,
                      exposure="me", seed=3)
    import cv2
    pic = procedural_image(128, 160, np.random.default_rng(5))
    cv2.imwrite(str(tmp_path / "p.png"), (pic.permute(1, 2, 0).numpy()[:, :, ::-1] * 255).astype(np.uint8))
    names = synthesize([tmp_path / "p.png"], tmp_path / "me", cfg, progress=False)
    labels = json.loads((tmp_path / "me" / "exposure.json").read_text())["clips"]
    assert len(names) == 5 and [labels[n] for n in names] == [[lvl] * 4 for lvl in (1, 2, 3, 4, 5)]
    energy = []
    for n in names:  # the same motion at five shutter lengths: sharpness falls as the shutter opens
        frames = sorted((tmp_path / "me" / "train_blur_bicubic" / "X4" / n).glob("*.png"))
        energy.append(np.mean([_gradient_energy(to_tensor(read_image(f))) for f in frames]))
    assert all(a > b for a, b in zip(energy, energy[1:])), energy
    item = WindowDataset(find_clips("reds", tmp_path / "me", split="all"), num_seq=3, patch=None, flow=None)[0]
    assert item["exposure"].tolist() == [1, 1, 1]
    # Algorithm S1: levels stay in 1..5 and move by at most one, only every 5 or 7 frames.
    traj = exposure_trajectory(40, np.random.default_rng(0))
    changes = [i for i in range(1, 40) if traj[i] != traj[i - 1]]
    assert all(1 <= v <= 5 for v in traj) and all(abs(traj[i] - traj[i - 1]) == 1 for i in changes)
    assert all(i % 5 == 0 for i in changes) or all(i % 7 == 0 for i in changes)


def test_three_stages_train_from_exposure_labelled_data(tmp_path):
    import csv

    import yaml

    from vsrdb.cli import main

    from conftest import synth_photo_dataset

    data = synth_photo_dataset(tmp_path, (64, 80), photo_size=(48, 64), exposure="re", clip_frames=10)
    cfg = {"model": "fmanetpp-cpu", "model_args": {"num_seq": 4, "dim": 12, "num_heads": 2, "embed_dim": 16,
                                                   "ete_width": 4},
           "data": {"layout": "reds", "root": str(data), "val_root": str(data), "patch": 8, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": None},
           "stages": {"ete": {"iterations": 2}, "netd": {"iterations": 2}, "joint": {"iterations": 2}},
           "run_dir": str(tmp_path / "run"), "checkpoint_every": 2, "val_every": 2, "log_every": 1, "threads": 1}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(tmp_path / "c.yaml"), "--quiet"]) == 0
    with open(tmp_path / "run" / "log.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["total"]]
    assert [r["stage"] for r in rows] == ["ete"] * 2 + ["netd"] * 2 + ["joint"] * 2
    assert all(float(r["contrastive"]) > 0 for r in rows[:2]) and all(float(r["flow"]) >= 0 for r in rows[2:])
    ete = vsrdb.load_checkpoint(tmp_path / "run" / "stage1_ete").ete.state_dict()
    final = vsrdb.load_checkpoint(tmp_path / "run" / "model")
    assert all(torch.equal(v, final.ete.state_dict()[k]) for k, v in ete.items())  # frozen after its stage


def test_evaluate_reports_each_exposure_level(tmp_path):
    import json

    from vsrdb.cli import main

    from conftest import synth_photo_dataset

    data = synth_photo_dataset(tmp_path, (96, 112), photo_size=(48, 64), exposure="me", clip_frames=4,
                               photo_clips=1, photo_subframes=10, max_shift=12.0)
    assert main(["evaluate", "--data", str(data), "--layout", "reds", "--split", "all", "--baseline", "bicubic",
                 "--all-frames", "--json", str(tmp_path / "e.json"), "--report", str(tmp_path / "r"), "--quiet"]) == 0
    levels = json.loads((tmp_path / "e.json").read_text())["exposure_levels"]
    assert list(levels) == ["5:1", "5:2", "5:3", "5:4", "5:5"] and all(v["frames"] == 4 for v in levels.values())
    psnr = [levels[k]["psnr"] for k in levels]
    assert psnr[0] > psnr[-1]  # bicubic suffers as the shutter opens
    assert "By exposure level" in (tmp_path / "r" / "report.md").read_text()


def test_a_sequence_family_is_scored_on_every_frame_and_beside_a_window_family_on_the_same_frames(tmp_path):
    import json

    from vsrdb.cli import main

    from conftest import synth_photo_dataset

    data = synth_photo_dataset(tmp_path, (64, 80), photo_size=(32, 48), clip_frames=5, photo_clips=1)
    torch.manual_seed(0)
    vsrdb.save_checkpoint(vsrdb.build("fmanetpp-cpu", dim=12, num_heads=2, ete_width=4, embed_dim=8), tmp_path / "pp")
    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny"), tmp_path / "fm")

    def scored(*weights):
        args = ["evaluate", "--data", str(data), "--layout", "reds", "--split", "all", "--baseline", "none",
                "--json", str(tmp_path / "e.json"), "--overwrite", "--quiet"]
        assert main(args + [a for w in weights for a in ("--weights", str(tmp_path / w))]) == 0
        return sum(c["frames"] for c in json.loads((tmp_path / "e.json").read_text())["clips"].values())

    n = sum(len(list(c.glob("*.png"))) for c in (data / "train_sharp").iterdir())
    clips = len(list((data / "train_sharp").iterdir()))
    assert scored("pp") == n  # T = 10 for training, but every frame of a clip is restored
    assert scored("pp", "fm") == n - 2 * clips  # fmanet-tiny's T = 3 leaves out each clip's ends


def test_report_pictures_come_from_the_family():
    from vsrdb.evaluate.report import model_maps

    maps = model_maps(vsrdb.build("fmanetpp-cpu").eval(), [torch.rand(3, 20, 24) for _ in range(5)])
    flows, kernels = maps.values()
    assert flows.dtype.name == kernels.dtype.name == "uint8"
    assert flows.shape == (20, 5 * 24, 3) and kernels.shape[2] == 3
