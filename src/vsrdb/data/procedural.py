"""Procedural pictures: content made by code, free to train on and to ship.

A picture is layered like a cluttered scene: a smooth multi-octave colour background, textured
regions (stripes, checks, noise), filled shapes with hard and soft edges, thin lines and
letter strokes. It has what restoration must learn from (edges at every orientation, fine
periodic texture, text, flat areas) without any photograph. ``vsrdb synth --procedural N``
writes such pictures and turns them into clips; ``vsrdb demo`` makes its clip from one.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["procedural_image"]

_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    r, g, b = (float(c) for c in rng.uniform(0, 255, 3))
    return r, g, b


def _noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4) -> np.ndarray:
    """Smooth value noise in [0, 1], ``[h, w, 3]``: a sum of upsampled random grids."""
    import cv2

    out = np.zeros((h, w, 3), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        cells = 2 ** (o + 2)
        grid = rng.random((cells, cells, 3)).astype(np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    return (out - out.min()) / max(float(out.max() - out.min()), 1e-6)


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A ``[h, w, 3]`` float texture in 0..255: stripes, checks or fine noise."""
    import cv2

    kind = rng.integers(3)
    a, b = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if kind == 0:  # stripes at a random angle and period
        ang, period = rng.uniform(0, np.pi), rng.uniform(3, 14)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period)
    elif kind == 1:  # checks
        s = rng.integers(3, 12)
        t = ((xx // s + yy // s) % 2).astype(np.float32)
    else:  # fine noise, slightly smoothed
        t = cv2.GaussianBlur(rng.random((h, w)).astype(np.float32), (0, 0), rng.uniform(0.5, 1.5))
        t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return a + (b - a) * t[..., None]


def procedural_image(height: int, width: int, rng: np.random.Generator) -> Tensor:
    """A random scene ``[3, height, width]`` in [0, 1]; the same ``rng`` state gives the same picture."""
    import cv2

    img: np.ndarray = (_noise(rng, height, width) * rng.uniform(80, 255) + rng.uniform(0, 60)).astype(np.float32)
    scale = min(height, width)
    # Textured regions under soft-edged masks.
    for _ in range(int(rng.integers(2, 5))):
        mask: np.ndarray = np.zeros((height, width), np.float32)
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        axes = (int(rng.uniform(0.08, 0.3) * scale), int(rng.uniform(0.08, 0.3) * scale))
        cv2.ellipse(mask, (int(cx), int(cy)), axes, rng.uniform(0, 180), 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(0.5, 3))[..., None]
        img = img * (1 - mask) + _texture(rng, height, width) * mask
    # Filled shapes with hard edges (anti-aliased) and a few thin outlines.
    for _ in range(int(rng.integers(8, 20))):
        colour = _colour(rng)
        kind = rng.integers(4)
        thick = -1 if rng.random() < 0.75 else int(rng.integers(1, 4))
        if kind == 0:
            c = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            cv2.circle(img, c, int(rng.uniform(0.02, 0.15) * scale), colour, thick, cv2.LINE_AA)
        elif kind == 1:
            p = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            q = (p[0] + int(rng.uniform(-0.3, 0.3) * scale), p[1] + int(rng.uniform(-0.3, 0.3) * scale))
            cv2.rectangle(img, p, q, colour, thick, cv2.LINE_AA)
        elif kind == 2:
            pts = np.stack([rng.uniform(0, width, 5), rng.uniform(0, height, 5)], 1).astype(np.int32)
            center = pts.mean(0)
            pts = (center + (pts - center) * rng.uniform(0.1, 0.4)).astype(np.int32)
            if thick < 0:
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA)
            else:
                cv2.polylines(img, [pts], True, colour, thick, cv2.LINE_AA)
        else:
            p = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            q = (int(rng.uniform(0, width)), int(rng.uniform(0, height)))
            cv2.line(img, p, q, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    # Letters: the thin, high-contrast strokes that blur destroys first.
    for _ in range(int(rng.integers(3, 8))):
        text = "".join(rng.choice(list(_LETTERS), int(rng.integers(3, 10))))
        font = int(rng.choice([cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_COMPLEX,
                               cv2.FONT_HERSHEY_TRIPLEX]))
        size = rng.uniform(0.3, 1.6) * scale / 256
        org = (int(rng.uniform(0, width * 0.8)), int(rng.uniform(height * 0.1, height)))
        mask = np.zeros((height, width), np.uint8)  # OpenCV draws text on 8-bit images only
        cv2.putText(mask, text, org, font, size, 255, int(rng.integers(1, 3)), cv2.LINE_AA)
        m = (mask.astype(np.float32) / 255)[..., None]
        img = img * (1 - m) + np.array(_colour(rng), np.float32) * m
    img = np.clip(img, 0, 255) / 255.0
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()
