"""Native x2 and x1 as a user runs them: synth at the scale, train, evaluate against the right
baseline, restore a video at the input's own size."""

import json

import numpy as np
import pytest
import torch
import yaml

from vsrdb.cli import main

from conftest import synth_photo_dataset


@pytest.fixture(scope="module")
def x1_run(tmp_path_factory):
    """A fmanet-tiny trained a few steps at x1 on a synth --scale 1 dataset, through the CLI."""
    root = tmp_path_factory.mktemp("x1")
    data = synth_photo_dataset(root, (96, 128), photo_size=(48, 64), scale=1)
    cfg = {"model": "fmanet-tiny", "model_args": {"scale": 1},
           "data": {"layout": "reds", "root": str(data), "val_root": str(data), "patch": 16, "batch": 2,
                    "workers": 0, "val_windows": 1, "flow": "dis"},
           "stages": {"netd": {"iterations": 2}, "joint": {"iterations": 2}},
           "run_dir": str(root / "run"), "checkpoint_every": 2, "val_every": 100, "log_every": 1, "threads": 1}
    (root / "c.yaml").write_text(yaml.safe_dump(cfg))
    assert main(["train", str(root / "c.yaml"), "--quiet"]) == 0
    return data, root / "run" / "model"


def test_synth_at_x1_keeps_the_frames_size_and_blurs_them(tmp_path):
    data = synth_photo_dataset(tmp_path, (96, 128), photo_size=(48, 64), scale=1)
    blur = sorted((data / "train_blur_bicubic" / "X1").rglob("*.png"))
    sharp = sorted((data / "train_sharp").rglob("*.png"))
    assert blur and len(blur) == len(sharp)
    import cv2

    b, s = cv2.imread(str(blur[2])), cv2.imread(str(sharp[2]))
    assert b.shape == s.shape == (48, 64, 3)
    assert not np.array_equal(b, s)  # the REDS-way blur at the frames' own size


def test_x1_trains_evaluates_against_the_input_and_restores_at_the_input_size(x1_run, tmp_path):
    import av

    data, model = x1_run
    assert json.loads((model / "config.json").read_text())["config"]["scale"] == 1
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--data", str(data), "--weights", str(model), "--json", str(out), "--quiet",
                 "--threads", "1", "--max-clips", "1"]) == 0
    scores = json.loads(out.read_text())
    assert list(scores["methods"]) == ["run/model", "input"]
    # x1's baseline is the blurry input itself: scored against the sharp frames, not perfect
    assert 15 < scores["methods"]["input"]["average"]["psnr"] < 50
    # a x4 scale asked of a x1 model is refused, naming both
    assert main(["evaluate", "--data", str(data), "--weights", str(model), "--scale", "4", "--quiet"]) == 2

    clip = tmp_path / "in.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(clip), "w") as f:
        st = f.add_stream("libx264", rate=10)
        st.width, st.height, st.pix_fmt = 70, 46, "yuv420p"  # not multiples of u = 4: padded and cropped
        for _ in range(4):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (46, 70, 3), dtype=np.uint8), format="rgb24")
            for packet in st.encode(frame):
                f.mux(packet)
        for packet in st.encode():
            f.mux(packet)
    restored = tmp_path / "out.mp4"
    assert main(["restore", str(clip), "-o", str(restored), "--weights", str(model), "--quiet", "--threads", "1"]) == 0
    with av.open(str(restored)) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (46, 70, 3)
    # a batch: one output per input, each at its input's size
    (tmp_path / "clips").mkdir()
    for name in ("a.mp4", "b.mp4"):
        (tmp_path / "clips" / name).write_bytes(clip.read_bytes())
    assert main(["restore", str(tmp_path / "clips"), "-o", str(tmp_path / "batch"), "--weights", str(model),
                 "--quiet", "--threads", "1"]) == 0
    for name in ("a.mp4", "b.mp4"):
        with av.open(str(tmp_path / "batch" / name)) as f:
            assert [fr.to_ndarray(format="rgb24").shape for fr in f.decode(video=0)] == [(46, 70, 3)] * 4


def test_x2_model_writes_twice_the_input_size(tmp_path):
    import vsrdb
    from vsrdb.checkpoints import load_checkpoint, save_checkpoint
    from vsrdb.restore import Restorer

    save_checkpoint(vsrdb.build("fmanet-tiny", scale=2).eval(), tmp_path / "m")
    model = load_checkpoint(str(tmp_path / "m"))
    assert model.scale == 2 and model.config.ds_kernel_size == 8
    frames = [torch.rand(3, 21, 30) for _ in range(3)]
    out = list(Restorer(model).run(iter(frames)))
    assert len(out) == 3 and out[0].shape == (3, 42, 60)


def test_x1_onnx_export_matches_pytorch_at_sizes_that_are_not_multiples_of_four(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import vsrdb

    # the smallest x1 FMA-Net (one frame, one FRMA block): the export's time is the exporter's
    from vsrdb.checkpoints import save_checkpoint

    save_checkpoint(vsrdb.build("fmanet-tiny", scale=1, num_seq=1, num_frma=1, num_rdb=1, num_dense_layer=1,
                                bias=True).eval(), tmp_path / "m")
    model_dir = tmp_path / "m"
    out = tmp_path / "x1.onnx"
    assert main(["export", "--weights", str(model_dir), "--onnx", str(out), "--no-optimize"]) == 0
    model = vsrdb.load_checkpoint(str(model_dir))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    for b, h, w in ((1, 24, 40), (2, 37, 29)):
        lr = torch.rand(b, 3, 1, h, w)
        with torch.no_grad():
            expected = model.restore(lr).numpy()
        got = session.run(["output"], {"lr": lr.numpy()})[0]
        assert got.shape == (b, 3, h, w) and np.abs(got - expected).max() < 1e-4


def test_a_x4_checkpoint_starts_a_x1_run_with_its_body(tmp_path, capsys):
    """init at another scale takes every tensor of the same name and shape; the layers that see
    image channels start fresh; any other difference is still refused."""
    import vsrdb
    from vsrdb.checkpoints import save_checkpoint
    from vsrdb.errors import CheckpointError
    from vsrdb.train.trainer import _load_init

    x4 = vsrdb.build("fmanet-tiny").eval()
    save_checkpoint(x4, tmp_path / "x4")
    x1 = vsrdb.build("fmanet-tiny", scale=1)
    _load_init(x1, str(tmp_path / "x4"))
    body = next(k for k in x1.state_dict() if k.startswith("net_r.frma_blocks."))
    assert torch.equal(x1.state_dict()[body], x4.state_dict()[body])
    first = next(k for k in x1.state_dict() if k.startswith("net_d.feature_extractor") and k.endswith("weight"))
    assert x1.state_dict()[first].shape[1] == 48 and x4.state_dict()[first].shape[1] == 3
    assert "x4 weights at x1" in capsys.readouterr().err
    with pytest.raises(CheckpointError, match="dim"):
        _load_init(vsrdb.build("fmanet-tiny", scale=1, dim=24, num_heads=2), str(tmp_path / "x4"))


def test_the_smallest_native_scale_that_reaches_the_size_asked_for_is_picked(monkeypatch):
    from vsrdb.errors import InputError
    from vsrdb.restore import scales

    offered = {4: "builtin", 2: "builtin-x2", 1: "builtin-x1"}
    auto = {4, 2, 1}  # the scales restore picks by itself (checkpoints.AUTO_SCALES)

    def native_scales(w, **kw):
        if w != "builtin":
            return {}
        return {s: n for s, n in offered.items() if not kw.get("auto") or s in auto}

    monkeypatch.setattr(scales, "native_scales", native_scales)
    assert scales.needed_scale(None, None, [(180, 320)]) is None
    assert scales.needed_scale(1.5, None, []) == 1.5
    # --size WxH against inputs of (height, width): the largest ratio over them
    assert scales.needed_scale(None, (1280, 720), [(360, 640), (720, 1280)]) == 2.0
    assert scales.needed_scale(None, (1300, 720), [(360, 640)]) == 1300 / 640
    pick = scales.pick_weights
    assert pick("builtin", scale=None, needed=None) == ("builtin", "")  # no size asked: the model's own
    assert pick("builtin", scale=None, needed=1)[0] == "builtin-x1"
    assert pick("builtin", scale=None, needed=1.5)[0] == "builtin-x2"
    assert pick("builtin", scale=None, needed=2)[0] == "builtin-x2"
    assert pick("builtin", scale=None, needed=1300 / 640)[0] == "builtin"
    assert pick("builtin", scale=None, needed=3)[0] == "builtin"
    assert pick("builtin", scale=1, needed=3)[0] == "builtin-x1"  # --scale forces it (restore then refuses x3)
    assert pick("runs/x/model", scale=2, needed=1) == ("runs/x/model", "")
    del offered[1]
    with pytest.raises(InputError, match=r"--scale 1: builtin ships at x4, x2 in this installation"):
        pick("builtin", scale=1, needed=None)
    assert pick("builtin", scale=None, needed=1)[0] == "builtin-x2"
    # a native scale restore does not pick by itself: the larger one runs, and the line says how
    auto.discard(2)
    chosen, line = pick("builtin", scale=None, needed=2)
    assert chosen == "builtin" and "--scale 2 runs builtin-x2 natively, faster" in line
    assert pick("builtin", scale=2, needed=2)[0] == "builtin-x2"
    assert pick("builtin", scale=None, needed=3) == ("builtin", "")
    with pytest.raises(InputError, match=r"--scale 2: m is a x4 model"):
        scales.check_scale(4, "m", 2)
    scales.check_scale(4, "m", None)


def test_evaluate_scores_a_x4_model_at_x1_as_restore_outscale_1_runs_it(x1_run, tmp_path):
    import vsrdb
    from vsrdb.checkpoints import save_checkpoint

    data, x1_model = x1_run
    torch.manual_seed(0)
    save_checkpoint(vsrdb.build("fmanet-tiny").eval(), tmp_path / "x4")
    out = tmp_path / "scores.json"
    # the models' scales differ: without --scale that is one line
    assert main(["evaluate", "--data", str(data), "--weights", str(x1_model), "--weights", str(tmp_path / "x4"),
                 "--quiet"]) == 2
    assert main(["evaluate", "--data", str(data), "--weights", str(x1_model), "--weights", str(tmp_path / "x4"),
                 "--scale", "1", "--json", str(out), "--quiet", "--threads", "1", "--max-clips", "1"]) == 0
    methods = json.loads(out.read_text())["methods"]
    assert list(methods) == ["run/model", "x4 (x4 shrunk to x1)", "input"]
    psnr = {name: m["average"]["psnr"] for name, m in methods.items()}
    assert len(set(psnr.values())) == 3 and all(5 < v < 60 for v in psnr.values())  # untrained: low
    # the shrunk x4 output is what restore --outscale 1 writes: the same PSNR from restore's PNGs
    import cv2

    from vsrdb.evaluate.metrics import psnr as psnr_of

    assert main(["evaluate", "--data", str(data), "--weights", str(tmp_path / "x4"), "--scale", "1", "--all-frames",
                 "--baseline", "none", "--json", str(tmp_path / "all.json"), "--quiet", "--threads", "1",
                 "--max-clips", "1"]) == 0
    scored = json.loads((tmp_path / "all.json").read_text())["average"]["psnr"]
    clip = sorted((data / "train_blur_bicubic" / "X1").iterdir())[0]
    assert main(["restore", str(clip), "-o", str(tmp_path / "png"), "--weights", str(tmp_path / "x4"),
                 "--outscale", "1", "--quiet", "--threads", "1"]) == 0
    outs = sorted((tmp_path / "png").glob("*.png"))
    sharp = sorted((data / "train_sharp" / clip.name).glob("*.png"))

    def rgb(path):
        return torch.from_numpy(cv2.imread(str(path))[..., ::-1].copy()).permute(2, 0, 1).float() / 255

    assert len(outs) == len(sharp)
    from_pngs = float(np.mean([psnr_of(rgb(o), rgb(t)) for o, t in zip(outs, sharp)]))
    assert abs(from_pngs - scored) < 0.05, (from_pngs, scored)


def test_the_built_in_x2_runs_when_asked_for_and_is_offered_when_it_would_be_faster(tmp_path, capsys):
    """builtin ships at x4 and x2. --outscale 2 keeps x4 shrunk (x2 version 1 restores held-out
    clips worse) and says how to run x2; --scale 2 runs builtin-x2 itself; a scale that does not
    ship, or --scale against a folder's own, is one line."""
    import cv2

    from vsrdb.checkpoints import builtin_weights

    if builtin_weights("builtin-x2") is None:
        pytest.skip("this installation has no builtin-x2")
    frames = tmp_path / "in"
    frames.mkdir()
    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 256, (26, 38, 3)).astype(np.float32), (5, 5), 1.5)
    for i in range(3):
        cv2.imwrite(str(frames / f"{i}.png"), np.roll(base, i, axis=1).astype(np.uint8))

    def restore(out, *args):
        code = main(["restore", str(frames), "-o", str(tmp_path / out), "--threads", "1", *args])
        return code, capsys.readouterr().err, sorted((tmp_path / out).glob("*.png"))

    code, err, shrunk = restore("x4-shrunk", "--outscale", "2")
    assert code == 0 and "builtin (x4), shrunk to the size asked for; --scale 2 runs builtin-x2 natively" in err
    code, err, native = restore("x2", "--scale", "2")
    assert code == 0 and "builtin-x2 (native x2, --scale 2)" in err
    code, _, named = restore("named", "--weights", "builtin-x2", "--quiet")
    assert code == 0 and len(native) == len(shrunk) == 3
    for a, b, c in zip(native, named, shrunk):
        x, y, z = (cv2.imread(str(p)) for p in (a, b, c))
        assert x.shape == z.shape == (52, 76, 3) and np.array_equal(x, y) and not np.array_equal(x, z)
    code, err, _ = restore("x1", "--scale", "1")
    assert code == 2 and "--scale 1: builtin ships at x4, x2 in this installation" in err
    assert len([line for line in err.splitlines() if "error" in line]) == 1 and not (tmp_path / "x1").exists()
    import vsrdb

    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny"), tmp_path / "tiny")
    code, err, _ = restore("t", "--weights", str(tmp_path / "tiny"), "--scale", "2")
    assert code == 2 and "is a x4 model" in err and not (tmp_path / "t").exists()
