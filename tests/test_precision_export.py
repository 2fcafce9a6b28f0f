"""Precision choice (auto from the hardware), the bf16 path against fp32, the built-in model by
name, and the ONNX export against PyTorch in ONNX Runtime."""

import numpy as np
import pytest
import torch

import vsrdb
from vsrdb.cli import main
from vsrdb.precision import resolve_precision
from vsrdb.restore import Restorer

AMX = {"bf16": True, "fp16": True, "amx": True, "avx512_bf16": True, "isa": "AVX512"}
AVX512_BF16 = {"bf16": True, "fp16": False, "amx": False, "avx512_bf16": True, "isa": "AVX512"}
NO_BF16 = {"bf16": False, "fp16": False, "amx": False, "avx512_bf16": False, "isa": "AVX2"}


@pytest.mark.parametrize("caps, expected", [(AMX, "bf16"), (AVX512_BF16, "bf16"), (NO_BF16, "fp32")])
def test_auto_precision_follows_the_cpu(caps, expected):
    chosen = resolve_precision("auto", "cpu", capabilities=caps)
    assert chosen.name == expected
    assert ("AMX-BF16" in chosen.reason) == caps["amx"]


def test_explicit_precisions_and_refusals():
    assert resolve_precision("fp32", "cpu", capabilities=AMX).dtype == torch.float32
    assert resolve_precision("BF16".lower(), "cpu", capabilities=AMX).dtype == torch.bfloat16
    assert "emulated" in resolve_precision("bf16", "cpu", capabilities=NO_BF16).reason
    with pytest.raises(ValueError, match="no native fp16"):
        resolve_precision("fp16", "cpu", capabilities=AVX512_BF16)
    with pytest.raises(ValueError, match="fp16 is for GPUs: this CPU has native fp16, but"):
        resolve_precision("fp16", "cpu", capabilities=AMX)  # overflow to NaN, not a CPU feature, decides
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", "cpu")
    # GPUs: bf16 where supported, else fp16; bf16 refused where unsupported.
    assert resolve_precision("auto", "cuda", capabilities={"bf16": True}).name == "bf16"
    assert resolve_precision("auto", "cuda", capabilities={"bf16": False}).name == "fp16"
    with pytest.raises(ValueError, match="does not support bf16"):
        resolve_precision("bf16", "cuda", capabilities={"bf16": False})


def _psnr(a, b):
    return float(-10 * torch.log10(((a.clamp(0, 1) - b.clamp(0, 1)) ** 2).mean()))


def _smooth_clip(n, h, w):
    g = torch.Generator().manual_seed(3)
    base = torch.nn.functional.interpolate(torch.rand(1, 3, h // 4, w // 4, generator=g), size=(h, w),
                                           mode="bicubic", align_corners=False)[0].clamp(0, 1)
    return [torch.roll(base, shifts=i, dims=-1) for i in range(n)]


@pytest.mark.parametrize("name", ["fmanet-tiny", "hoffr-cpu", "jffra-cpu"])
def test_bf16_path_stays_close_to_fp32(name):
    torch.manual_seed(0)
    model = vsrdb.build(name).eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    frames = _smooth_clip(4, 24, 32)
    ref = list(Restorer(model, precision="fp32").run(frames))
    model_bf16 = vsrdb.build(name).eval()
    model_bf16.load_state_dict(state)
    restorer = Restorer(model_bf16, precision="bf16")
    assert next(restorer.model.parameters()).dtype == torch.bfloat16
    low = list(restorer.run(frames))
    assert all(o.dtype == torch.float32 and o.shape == r.shape for o, r in zip(low, ref))
    worst = min(_psnr(o, r) for o, r in zip(low, ref))
    assert 35 < worst < 200, worst  # close, and not secretly the fp32 path


def test_builtin_model_by_name_and_its_bf16_quality():
    from vsrdb.checkpoints import builtin_weights

    if builtin_weights() is None:
        pytest.skip("the built-in model is not in this checkout")
    model = vsrdb.load_checkpoint("builtin")
    assert model.config == vsrdb.load_checkpoint(builtin_weights()).config
    frames = _smooth_clip(3, 32, 48)
    fp32 = list(Restorer(model, precision="fp32").run(frames))
    bf16 = list(Restorer(vsrdb.load_checkpoint("builtin"), precision="bf16").run(frames))
    # The issue's bar for bf16: frames at least 40 dB from fp32's.
    assert min(_psnr(a, b) for a, b in zip(bf16, fp32)) >= 40


def test_onnx_export_matches_pytorch_at_two_sizes(tmp_path, weights, capsys):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    assert main(["export", "--weights", weights, "--onnx", str(out)]) == 0
    assert "input lr [B, 3, 3, H, W]" in capsys.readouterr().out
    model = vsrdb.load_checkpoint(weights)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["lr"] and [o.name for o in session.get_outputs()] == ["output"]
    for b, h, w in ((1, 24, 40), (3, 37, 29)):
        lr = torch.rand(b, 3, 3, h, w)
        with torch.no_grad():
            expected = model.restore(lr).numpy()
        got = session.run(["output"], {"lr": lr.numpy()})[0]
        assert got.shape == (b, 3, 4 * h, 4 * w)
        assert np.abs(got - expected).max() < 1e-4
    # An existing file is kept unless --overwrite.
    assert main(["export", "--weights", weights, "--onnx", str(out)]) == 2
    assert "exists" in capsys.readouterr().err
