"""scripts/flicker_blend.py's recurrent blend (issue 38's flicker experiment)."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "flicker_blend.py"


def _blend():
    spec = importlib.util.spec_from_file_location("flicker_blend", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.blend_with_previous


def test_the_blend_calms_noise_on_a_still_scene_and_on_a_pan():
    blend = _blend()
    torch.manual_seed(0)
    # A textured scene; frame-to-frame noise of 0.01 (codec-like) on a still camera ...
    scene = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 104), 5, stride=1, padding=2)[0]
    still = [(scene + 0.01 * torch.randn_like(scene)).clamp(0, 1) for _ in range(6)]
    out = blend(still, 0.7, 0.05)
    before = sum((still[i] - still[i - 1]).abs().mean() for i in range(1, 6))
    after = sum((out[i] - out[i - 1]).abs().mean() for i in range(1, 6))
    assert torch.equal(out[0], still[0]) and after < 0.7 * before
    # On a pan, the previous output is warped into place first: the noise is calmed there too, and
    # nothing is smeared (without the warp the blend would find no match and leave the noise).
    texture = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 72, 160), 5, stride=1, padding=2)[0]
    clean = [texture[:, :, 4 * i:4 * i + 104] for i in range(6)]
    noisy = [(f + 0.01 * torch.randn_like(f)).clamp(0, 1) for f in clean]
    followed = blend(noisy, 0.7, 0.05)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    error_in = sum((noisy[i] - clean[i])[inner].abs().mean() for i in range(2, 6))
    error_out = sum((followed[i] - clean[i])[inner].abs().mean() for i in range(2, 6))
    assert error_out < 0.8 * error_in
