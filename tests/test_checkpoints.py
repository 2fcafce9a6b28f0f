"""Checkpoints: the authors' files (shared reference and generated configs) and our format."""

import dataclasses
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import vsrdb
from vsrdb.checkpoints import CheckpointError
from vsrdb.models.fmanet_release import export_official_state_dicts, save_official_checkpoint

# Our output names for the release's names in tiny_a_vectors.pt.
OUTPUT_NAMES = {"recon": "recon", "hr_warp": "hr_warp", "image_flow": "image_flow", "F_sharp_D": "anchor_d",
                "output": "output", "lr_warp": "lr_warp", "F_sharp_R": "anchor_r"}


def test_official_checkpoint_reproduces_reference_outputs(reference_dir, reference_vectors):
    model = vsrdb.load_checkpoint(reference_dir)
    assert not model.training and model.channel_order == "BGR"
    with torch.no_grad():
        out = model(reference_vectors["x"], reference_vectors["y"])
    for theirs, ours in OUTPUT_NAMES.items():
        err = (out[ours] - reference_vectors["outputs"][theirs]).abs().max().item()
        assert err <= 1e-5, f"{ours}: max abs error {err:.2e}"
    assert sum(p.numel() for p in model.parameters()) == reference_vectors["num_parameters"]


def test_official_config_is_read_off_the_shapes(reference_dir, reference_vectors):
    model = vsrdb.load_checkpoint(reference_dir)
    # The release's config as it names things; ours are lower-case field names.
    names = {"num_RDB": "num_rdb", "num_FRMA": "num_frma", "LayerNorm_type": "layernorm_type"}
    released = vsrdb.models.FMANetConfig(**{names.get(k, k): v for k, v in reference_vectors["config"].items()})
    assert model.config == released


def test_net_d_intermediates_match_reference(reference_dir, reference_vectors):
    model = vsrdb.load_checkpoint(reference_dir)
    with torch.no_grad():
        d = model.net_d(reference_vectors["x"].transpose(1, 2))
    ours = {"F": d.feat, "KD": d.kernels, "f_Y": d.image_flow, "f": d.flow, "anchor": d.anchor}
    for name, value in ours.items():
        assert (value.transpose(1, 2) - reference_vectors["net_d"][name]).abs().max() <= 1e-5, name


def test_official_net_d_alone_gives_stage_one(reference_dir, reference_vectors, tmp_path):
    shutil.copy(reference_dir / "model_D_best.pt", tmp_path / "model_D_best.pt")
    model = vsrdb.load_checkpoint(tmp_path / "model_D_best.pt")
    assert model.config.stage == 1 and model.net_r is None
    with torch.no_grad():
        out = model(reference_vectors["x"], reference_vectors["y"])
    assert (out["recon"] - reference_vectors["outputs"]["recon"]).abs().max() <= 1e-5
    assert "output" not in out


def test_export_to_official_names_is_the_inverse(reference_dir):
    model = vsrdb.load_checkpoint(reference_dir)
    state_d, state_r = export_official_state_dicts(model)
    for name, state in (("model_D_best.pt", state_d), ("model_R_best.pt", state_r)):
        original = torch.load(reference_dir / name, weights_only=True)[name.replace("_best.pt", "_state_dict")
                                                                            .replace("model_", "model_")]
        assert set(state) == set(original)
        assert all(torch.equal(state[k], original[k]) for k in original)


OTHER_CONFIGS = [
    dict(num_seq=5, dim=20, num_flow=2, num_heads=4, layernorm_type="BiasFree", bias=True, num_frma=3,
         num_transformer_block=2, ds_kernel_size=6, us_kernel_size=5, num_rdb=3, growth_rate=5,
         num_dense_layer=3, ffn_expansion_factor=2.0),
    dict(num_seq=7, dim=42, num_flow=7, num_heads=3, num_frma=1, ds_kernel_size=10),
    dict(num_seq=1, dim=12, num_flow=4, num_heads=6, stage=1, bias=True),
    dict(num_seq=4, dim=24, num_flow=4, num_heads=8, layernorm_type="BiasFree"),
]


@pytest.mark.parametrize("overrides", OTHER_CONFIGS)
def test_shape_inference_is_general(overrides, tmp_path):
    model = vsrdb.build("fmanet-tiny", **overrides).eval()
    save_official_checkpoint(model, tmp_path)
    loaded = vsrdb.load_checkpoint(tmp_path)
    expected = model.config
    if expected.stage == 1:  # k_r lives in NetR only: a NetD file cannot tell it, the release's 5 is taken
        expected = dataclasses.replace(expected, us_kernel_size=5)
    assert loaded.config == expected
    t = model.config.num_seq
    lr, hr = torch.rand(2, 3, t, 9, 11), torch.rand(2, 3, t, 36, 44)
    with torch.no_grad():
        a, b = model(lr, hr), loaded(lr, hr)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("preset,overrides", [("fmanet-tiny", {}), ("fmanet-tiny", {"stage": 1, "num_seq": 5, "dim": 30}),
                                              ("fmanet-cpu", {"flow_guided": False})])
def test_own_format_round_trips_bit_exactly(preset, overrides, tmp_path):
    model = vsrdb.build(preset, **overrides)
    vsrdb.save_checkpoint(model, tmp_path / "ckpt")
    loaded = vsrdb.load_checkpoint(tmp_path / "ckpt")
    assert loaded.config == model.config and loaded.preset == preset and not loaded.training
    original = model.state_dict()
    assert set(loaded.state_dict()) == set(original)
    assert all(torch.equal(v, original[k]) for k, v in loaded.state_dict().items())
    record = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert record["model"] == preset and record["meta"]["channel_order"] == "RGB"


def test_channel_order_survives_our_format(reference_dir, tmp_path):
    vsrdb.save_checkpoint(vsrdb.load_checkpoint(reference_dir), tmp_path / "bgr")
    assert vsrdb.load_checkpoint(tmp_path / "bgr").channel_order == "BGR"


def test_save_refuses_to_overwrite(tmp_path):
    model = vsrdb.build("fmanet-tiny")
    vsrdb.save_checkpoint(model, tmp_path / "c")
    with pytest.raises(FileExistsError):
        vsrdb.save_checkpoint(model, tmp_path / "c")
    vsrdb.save_checkpoint(model, tmp_path / "c", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no temporary folders left


def _corrupt(tmp_path, edit):
    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny"), tmp_path / "c")
    weights = tmp_path / "c" / "model.safetensors"
    state = load_file(str(weights))
    edit(state)
    save_file(state, str(weights))
    return tmp_path / "c"


def test_missing_tensor_is_named(tmp_path):
    path = _corrupt(tmp_path, lambda s: s.pop("net_r.high_freq.conv1.weight"))
    with pytest.raises(CheckpointError, match=r"'net_r\.high_freq\.conv1\.weight' is missing"):
        vsrdb.load_checkpoint(path)


def test_misshaped_tensor_is_named(tmp_path):
    def edit(s):
        s["net_d.kernel_head.2.weight"] = torch.zeros(3, 18, 1, 3, 3)
    with pytest.raises(CheckpointError, match=r"'net_d\.kernel_head\.2\.weight' has shape \(3, 18, 1, 3, 3\)"):
        vsrdb.load_checkpoint(_corrupt(tmp_path, edit))


def test_misshaped_official_tensor_is_named(reference_dir, tmp_path):
    blob = torch.load(reference_dir / "model_R_best.pt", weights_only=True)
    blob["model_R_state_dict"]["upsample.conv2.weight"] = torch.zeros(4, 4, 3, 3)
    shutil.copy(reference_dir / "model_D_best.pt", tmp_path)
    torch.save(blob, tmp_path / "model_R_best.pt")
    with pytest.raises(CheckpointError, match=r"high_freq\.conv2\.weight' has shape \(4, 4, 3, 3\)"):
        vsrdb.load_checkpoint(tmp_path)


def test_unreadable_and_absent_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="no such file"):
        vsrdb.load_checkpoint(tmp_path / "nope")
    with pytest.raises(CheckpointError, match="config.json"):
        vsrdb.load_checkpoint(tmp_path)
    (tmp_path / "model_D_best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="model_D_best.pt: cannot read"):
        vsrdb.load_checkpoint(tmp_path)


def test_arbitrary_pickles_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))
    torch.save({"model_D_state_dict": Evil()}, tmp_path / "model_D_best.pt")
    with pytest.raises(CheckpointError, match="weights-only"):
        vsrdb.load_checkpoint(tmp_path)


def test_average_checkpoints_is_the_elementwise_mean_of_like_models(tmp_path):
    from vsrdb.checkpoints import average_checkpoints

    torch.manual_seed(0)
    a, b = vsrdb.build("fmanet-tiny"), vsrdb.build("fmanet-tiny")  # different random inits
    vsrdb.save_checkpoint(a, tmp_path / "a")
    vsrdb.save_checkpoint(b, tmp_path / "b")
    mean = average_checkpoints([tmp_path / "a", tmp_path / "b"]).state_dict()
    sa, sb = a.state_dict(), b.state_dict()
    key = "net_r.high_freq.conv1.weight"
    assert not torch.equal(sa[key], sb[key])
    assert all(torch.allclose(v, (sa[k] + sb[k]) / 2) for k, v in mean.items() if v.is_floating_point())
    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny", dim=30), tmp_path / "other")
    with pytest.raises(CheckpointError, match="other: a different architecture"):
        average_checkpoints([tmp_path / "a", tmp_path / "other"])
