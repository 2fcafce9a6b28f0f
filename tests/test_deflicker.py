"""``--deflicker``: each output blended with the previous one, warped onto it (restore/deflicker.py)."""

import os

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import vsrdb
from vsrdb.cli import main
from vsrdb.errors import InputError
from vsrdb.restore import Restorer
from vsrdb.restore.deflicker import deflicker


def _smooth(h, w, k):
    return F.avg_pool2d(torch.rand(1, 3, h, w), k, stride=1, padding=k // 2)[0]


def _chain(frames, alpha=0.7):
    out = []
    for f in frames:
        out.append(deflicker(f, out[-1] if out else None, alpha))
    return out


def test_deflicker_calms_noise_on_a_still_scene_and_on_a_pan():
    torch.manual_seed(0)
    # A textured scene with frame-to-frame noise of 0.01 (codec-like) on a still camera ...
    scene = _smooth(72, 104, 5)
    still = [(scene + 0.01 * torch.randn_like(scene)).clamp(0, 1) for _ in range(6)]
    out = _chain(still)
    before = sum((still[i] - still[i - 1]).abs().mean() for i in range(1, 6))
    after = sum((out[i] - out[i - 1]).abs().mean() for i in range(1, 6))
    assert torch.equal(out[0], still[0]) and after < 0.7 * before
    # ... and on a pan: the previous output is warped into place first, so the noise is calmed
    # there too and nothing is smeared (without the warp the blend finds no match).
    texture = _smooth(72, 160, 5)
    clean = [texture[:, :, 4 * i:4 * i + 104] for i in range(6)]
    noisy = [(f + 0.01 * torch.randn_like(f)).clamp(0, 1) for f in clean]
    followed = _chain(noisy)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    error_in = sum((noisy[i] - clean[i])[inner].abs().mean() for i in range(2, 6))
    error_out = sum((followed[i] - clean[i])[inner].abs().mean() for i in range(2, 6))
    assert error_out < 0.8 * error_in
    # New content (nothing like the previous frame) is kept: only pixels that match by chance move.
    other = _smooth(72, 104, 5)
    assert (deflicker(other, still[0], 0.7) - other).abs().mean() < 0.1 * (other - still[0]).abs().mean()


def _clip(n=10, h=20, w=24):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (h + 2 * n, w + 2 * n, 3), dtype=np.uint8)
    return [np.ascontiguousarray(base[i:i + h, i:i + w]) for i in range(n)]


def _frames(folder):
    return [cv2.imread(str(folder / name)) for name in sorted(os.listdir(folder)) if name.endswith(".png")]


def test_a_deflickered_restore_interrupted_and_resumed_equals_an_uninterrupted_one(tmp_path, weights):
    # Outputs depend on the frames before them: segments run in order, each starting from the
    # previous segment's last output (kept in the work folder), so a run interrupted mid-segment and
    # resumed writes exactly the frames of one that was not.
    from vsrdb.restore import restore_video

    (tmp_path / "in").mkdir()
    for i, f in enumerate(_clip()):
        cv2.imwrite(str(tmp_path / "in" / f"{i:02d}.png"), f)
    model = vsrdb.load_checkpoint(weights)
    args = dict(progress=False, segment=4, device="cpu")
    restore_video(str(tmp_path / "in"), str(tmp_path / "whole"), model, deflicker=0.7, **args)
    restore_video(str(tmp_path / "in"), str(tmp_path / "plain"), model, **args)
    original = Restorer._blend
    calls = []

    def interrupted(self, tiles):
        calls.append(1)
        if len(calls) == 10:  # in the third segment
            raise KeyboardInterrupt
        return original(self, tiles)

    Restorer._blend = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            restore_video(str(tmp_path / "in"), str(tmp_path / "resumed"), model, deflicker=0.7, **args)
    finally:
        Restorer._blend = original  # type: ignore[method-assign]
    # the third segment starts from the second's last output; the first's is no longer kept
    assert sorted(p.name for p in (tmp_path / "resumed.vsrdb-work").glob("state_*")) == ["state_000001.pt"]
    with pytest.raises(ValueError, match="different deflicker"):  # the work's setting is kept
        restore_video(str(tmp_path / "in"), str(tmp_path / "resumed"), model, resume=True, **args)
    done = restore_video(str(tmp_path / "in"), str(tmp_path / "resumed"), model, deflicker=0.7, resume=True, **args)
    whole, plain, resumed = (_frames(tmp_path / d) for d in ("whole", "plain", "resumed"))
    assert done["frames"] == len(whole) == len(resumed) == 10
    assert all(np.array_equal(a, b) for a, b in zip(whole, resumed))
    # the first frame has no predecessor; later ones are blended
    assert np.array_equal(whole[0], plain[0]) and not all(np.array_equal(a, b) for a, b in zip(whole, plain))


def test_deflicker_is_refused_where_it_does_not_apply(weights, capsys):
    with pytest.raises(InputError, match="recurrent already"):
        Restorer(vsrdb.build("hoffr", dim=8, num_db_blocks=1, num_sr_blocks=1, num_rcab=1, reduction=4, flow_dim=4,
                             flow_levels=2), deflicker=0.5)
    with pytest.raises(SystemExit):
        main(["restore", "in.mp4", "-o", "out.mp4", "--weights", weights, "--deflicker", "1.5"])
    assert "--deflicker: 1.5 must be more than 0 and at most 1" in capsys.readouterr().err
