"""MATLAB-compatible bicubic imresize."""

import numpy as np
import torch
from PIL import Image

from vsrdb.data.resize import imresize


def test_matches_pillow_bicubic_within_one_grey_level_away_from_borders():
    # Pillow's bicubic is the same antialiased a=-0.5 kernel, but clips its window at the
    # borders where MATLAB mirrors the image: compare beyond the two border pixels.
    rng = np.random.default_rng(0)
    img = (rng.random((16, 20, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(img).resize((320, 256), Image.BICUBIC))  # smooth, textured content
    t = torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255
    ours = (imresize(t, 0.25).clamp(0, 1) * 255).round().permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(img).resize((80, 64), Image.BICUBIC)).astype(float)
    assert ours.shape == pil.shape
    assert np.abs(ours - pil)[2:-2, 2:-2].max() <= 1


def test_matlab_reference_values():
    # MATLAB: imresize([1 2 3 4], 2) = 0.9062 1.1797 1.7266 2.2500 2.7500 3.2734 3.8203 4.0938
    up = imresize(torch.arange(1, 5, dtype=torch.float64).view(1, 4), 2.0)[0]
    expected = torch.tensor([0.90625, 1.1796875, 1.7265625, 2.25, 2.75, 3.2734375, 3.8203125, 4.09375],
                            dtype=torch.float64)
    assert torch.allclose(up, expected, atol=1e-4)


def test_constant_image_stays_constant_and_sizes_round_up():
    x = torch.full((2, 3, 37, 50), 0.4)
    y = imresize(x, 0.25)
    assert y.shape == (2, 3, 10, 13)
    assert torch.allclose(y, torch.full_like(y, 0.4), atol=1e-6)
