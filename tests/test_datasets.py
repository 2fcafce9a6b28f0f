"""Training windows: layouts, validation errors, flips that keep flows consistent, determinism."""

import cv2
import numpy as np
import pytest
import torch

from vsrdb.data.datasets import WindowDataset, find_clips, reds_clips, validate_clips
from vsrdb.errors import InputError
from vsrdb.ops import flow_warp

from conftest import synth_photo_dataset


@pytest.fixture(scope="module")
def reds(tmp_path_factory):
    return synth_photo_dataset(tmp_path_factory.mktemp("reds"), (200, 240), photo_size=(96, 128), max_rotation=0,
                               max_zoom=0, foreground=0)


def test_layout_and_shapes(reds):
    clips = reds_clips(reds, "all")
    validate_clips(clips)
    ds = WindowDataset(clips, patch=16, flow="dis")
    assert len(ds) == 10
    item = ds[0]
    assert item["lr"].shape == (3, 3, 16, 16) and item["hr"].shape == (3, 3, 64, 64)
    assert item["flow"].shape == (2, 3, 16, 16) and item["flow"][:, 1].abs().max() == 0


def test_same_seed_epoch_index_same_sample(reds):
    ds = WindowDataset(reds_clips(reds, "all"), patch=16, flow=None, seed=1)
    a, b = ds[4], ds[4]
    assert all(torch.equal(a[k], b[k]) for k in a)
    ds.set_epoch(1)
    assert not torch.equal(ds[4]["lr"], a["lr"])


def test_flips_keep_flow_consistent_with_frames(reds):
    clips = reds_clips(reds, "all")
    plain = WindowDataset(clips, patch=None, flow="dis", augment=False)[2]
    err_plain = (flow_warp(plain["lr_sharp"][:, 0][None], plain["flow"][:, 0][None])[0]
                 - plain["lr_sharp"][:, 1])[:, 4:-4, 4:-4].abs().mean()
    flipped = 0
    for k in range(40):  # some of these draws flip horizontally and/or vertically
        ds = WindowDataset(clips, patch=None, flow="dis", augment=True, seed=k)
        item = ds[2]
        if torch.equal(item["lr"], plain["lr"]):
            continue
        flipped += 1
        warped = flow_warp(item["lr_sharp"][:, 0][None], item["flow"][:, 0][None])[0]
        err = (warped - item["lr_sharp"][:, 1])[:, 4:-4, 4:-4].abs().mean()
        assert err <= err_plain + 1e-3  # a flip that did not negate the flow would break alignment
    assert flipped > 10


def test_mismatched_and_unreadable_clips_are_named(reds, tmp_path):
    import shutil
    bad = tmp_path / "bad"
    shutil.copytree(reds, bad)
    frames = sorted((bad / "train_sharp" / "001").glob("*.png"))
    frames[-1].unlink()
    with pytest.raises(InputError, match="clip 001: frame counts differ"):
        validate_clips(reds_clips(bad, "all"))
    shutil.copy(sorted((bad / "train_sharp" / "000").glob("*.png"))[-1], frames[-1])
    cv2.imwrite(str(frames[-1]), np.zeros((40, 40, 3), np.uint8))
    with pytest.raises(InputError, match=r"00000004\.png: frame is 40x40"):
        validate_clips(reds_clips(bad, "all"))
    frames[-1].write_bytes(b"not an image")
    with pytest.raises(InputError, match=r"00000004\.png: unreadable image"):
        validate_clips(reds_clips(bad, "all"))
    with pytest.raises(InputError, match="missing folder"):
        find_clips("reds", tmp_path / "nowhere")
    with pytest.raises(InputError, match="unknown dataset layout"):
        find_clips("vimeo", reds)


def test_reds4_split(tmp_path):
    for name in ("000", "001", "011"):
        for sub in ("train_blur_bicubic/X4", "train_sharp"):
            (tmp_path / sub / name).mkdir(parents=True)
            cv2.imwrite(str(tmp_path / sub / name / "0.png"), np.zeros((4, 4, 3), np.uint8))
    assert [c.name for c in reds_clips(tmp_path, "train")] == ["001"]
    assert [c.name for c in reds_clips(tmp_path, "val")] == ["000", "011"]
