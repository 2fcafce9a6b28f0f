"""Pseudo-GT flow: direction convention and accuracy on a known translation."""

import numpy as np
import pytest
import torch
from PIL import Image

from vsrdb.data.flow import estimate_flow, window_flows
from vsrdb.ops import flow_warp


def textured(h=64, w=80, seed=0):
    rng = np.random.default_rng(seed)
    small = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8)
    img = np.asarray(Image.fromarray(small).resize((w + 16, h + 16), Image.BICUBIC))
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_flow_recovers_a_translation_in_the_model_convention(method):
    big = textured()
    centre = big[:, 8:72, 8:88]
    other = big[:, 8:72, 11:91]  # content moved 3 px left: centre(p) = other(p - 3)
    flow = estimate_flow(centre, other, method)
    inner = flow[:, 12:-12, 12:-12]
    assert abs(inner[0].median().item() + 3) < 0.5 and abs(inner[1].median().item()) < 0.5
    warped = flow_warp(other[None], flow[None])[0]  # backward-warping the neighbour gives the centre
    assert (warped - centre)[:, 12:-12, 12:-12].abs().mean() < 0.02


def test_window_flow_is_zero_at_centre():
    big = textured()
    window = torch.stack([big[:, 8:72, 8 + d:88 + d] for d in (-2, 0, 2)], dim=1)
    flows = window_flows(window)
    assert flows.shape == (2, 3, 64, 80)
    assert flows[:, 1].abs().max() == 0
    # frame 0 is big[6:86]: centre(p) = frame0(p + 2), so its flow is +2 (and -2 for frame 2)
    assert flows[0, 0, 12:-12, 12:-12].median() > 1 and flows[0, 2, 12:-12, 12:-12].median() < -1


def test_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="unknown flow estimator"):
        estimate_flow(torch.rand(3, 8, 8), torch.rand(3, 8, 8), "raft")
