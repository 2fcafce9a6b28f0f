"""Shared fixtures. Tests that need ../shared (reference vectors, sample data) skip without it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VSRDB_SHARED", ROOT.parent / "shared"))
REFERENCE = SHARED / "reference"

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    folder = REFERENCE / "tiny_a_official_checkpoint"
    if not (folder / "model_D_best.pt").exists():
        pytest.skip(f"reference checkpoint not found at {folder} (needs ../shared beside the repo, "
                    "or VSRDB_SHARED=path/to/shared)")
    return folder


@pytest.fixture(scope="session")
def reference_vectors() -> dict:
    path = REFERENCE / "tiny_a_vectors.pt"
    if not path.exists():
        pytest.skip(f"reference vectors not found at {path} (needs ../shared beside the repo)")
    return torch.load(path, map_location="cpu", weights_only=True)


@pytest.fixture(scope="session")
def weights(tmp_path_factory) -> str:
    """A checkpoint folder of the tiny FMA-Net with seeded random weights (restore tests)."""
    import vsrdb

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny"
    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny"), path)
    return str(path)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True, scope="session")
def _user_cache(tmp_path_factory) -> None:
    """The user's cache (computed flows, vsrdb serve's default folder) in a temporary folder, for
    this process and the commands it starts. vsrdb's compiled CPU kernel stays where the user's
    builds are (.ci/run builds it before the tests), so the suite does not compile it again."""
    from vsrdb.ops.kernels import kernels_folder

    os.environ.setdefault("VSRDB_KERNELS_DIR", str(kernels_folder()))
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("user-cache"))


def synth_photo_dataset(root: Path, photo_hw: tuple[int, int], **cfg) -> Path:
    """A small REDS-layout dataset synthesised from one smooth random photo; returns its folder."""
    import cv2
    import numpy as np

    from vsrdb.data.synth import SynthConfig, synthesize

    rng = np.random.default_rng(0)
    small = (rng.random((10, 12, 3)) * 255).astype(np.uint8)
    cv2.imwrite(str(root / "p.png"), cv2.resize(small, photo_hw[::-1], interpolation=cv2.INTER_CUBIC))
    cfg = {"clip_frames": 5, "photo_clips": 2, **cfg}
    synthesize([root / "p.png"], root / "ds", SynthConfig(**cfg), progress=False)
    return root / "ds"
