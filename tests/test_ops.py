"""Warping and dynamic filtering against slow, obvious versions."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from vsrdb.ops import (
    dynamic_downsample,
    dynamic_upsample,
    flow_warp,
    image_flow_warp,
    multi_flow_warp,
    normalize_downsampling_kernels,
    normalize_upsampling_kernels,
)


def test_flow_warp_zero_flow_is_identity():
    x = torch.rand(2, 3, 7, 9)
    assert torch.allclose(flow_warp(x, torch.zeros(2, 2, 7, 9)), x, atol=1e-6)


def test_flow_warp_integer_shift_samples_neighbour_with_zero_padding():
    x = torch.rand(1, 2, 6, 8)
    flow = torch.zeros(1, 2, 6, 8)
    flow[:, 0] = 2.0  # out(y, x) = in(y, x + 2)
    flow[:, 1] = -1.0  # out(y, x) = in(y - 1, ...)
    out = flow_warp(x, flow)
    assert torch.allclose(out[:, :, 1:, :-2], x[:, :, :-1, 2:], atol=1e-5)
    assert out[:, :, 0].abs().max() < 1e-6 and out[:, :, :, -2:].abs().max() < 1e-6


def test_flow_warp_half_pixel_is_bilinear_average():
    x = torch.rand(1, 1, 4, 5)
    flow = torch.zeros(1, 2, 4, 5)
    flow[:, 0] = 0.5
    out = flow_warp(x, flow)
    assert torch.allclose(out[..., :-1], 0.5 * (x[..., :-1] + x[..., 1:]), atol=1e-5)


def test_multi_flow_warp_matches_per_group_loop():
    b, t, n, cg, h, w = 2, 3, 3, 2, 5, 6
    feat = torch.rand(b, t, n * cg, h, w)
    fm = torch.randn(b, t, 3 * n, h, w) * 2
    out = multi_flow_warp(feat, fm)
    for bi in range(b):
        for ti in range(t):
            for j in range(n):
                g = feat[bi:bi + 1, ti, j * cg:(j + 1) * cg]
                tri = fm[bi:bi + 1, ti, 3 * j:3 * j + 3]
                ref = flow_warp(g, tri[:, :2]) * torch.sigmoid(tri[:, 2:3])
                assert torch.allclose(out[bi, ti, j * cg:(j + 1) * cg], ref[0], atol=1e-6)


def _reference_multi_flow_warp(feat, fm):
    """multi_flow_warp as its definition: grid_sample per group, times sigmoid(mask), in fp32."""
    n = fm.shape[2] // 3
    b, t, c, h, w = feat.shape
    groups = feat.float().reshape(b * t * n, c // n, h, w)
    tri = fm.float().reshape(b * t * n, 3, h, w)
    return (flow_warp(groups, tri[:, :2]) * torch.sigmoid(tri[:, 2:3])).reshape(b, t, c, h, w)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n, cg", [(3, 12), (9, 10), (3, 16), (2, 5), (2, 20), (1, 40)])
def test_inference_warp_equals_the_definition(kernel, dtype, n, cg, monkeypatch):
    # Inference on channels-last features takes ops/csrc's one-pass kernel where it is built (the
    # presets' group widths 10/12/16, any other width, AVX-512 or not) or the PyTorch form: both
    # must give the definition's numbers, padding and far-off flows included.
    from vsrdb.ops import kernels

    if kernel and not kernels.available():
        pytest.skip(f"vsrdb's kernels are not built here: {kernels.why_not()}")
    if not kernel:
        monkeypatch.setattr(kernels, "multi_flow_warp", lambda: None)
    torch.manual_seed(n * cg)
    b, t, h, w = 1, 3, 7, 9
    feat = torch.randn(b * t, n * cg, h, w).to(dtype).contiguous(memory_format=torch.channels_last)
    fm = torch.randn(b * t, 3 * n, h, w) * 3
    fm[0, 0, :2] += 40.0  # a row of samples far outside the frame
    fm[1, 1, 3, 4] = -3.5  # exactly between pixels, at the border
    fm = fm.contiguous(memory_format=torch.channels_last)  # as a convolution leaves it
    feat5, fm5 = feat.unflatten(0, (b, t)), fm.unflatten(0, (b, t))
    with torch.inference_mode():
        out = multi_flow_warp(feat5, fm5)
    assert out.dtype == dtype and out.flatten(0, 1).is_contiguous(memory_format=torch.channels_last)
    expected = _reference_multi_flow_warp(feat5, fm5)
    if dtype == torch.float32:
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    else:  # the fp32 result rounded to bf16: at most one bf16 step apart
        torch.testing.assert_close(out.float(), expected, rtol=2 ** -7, atol=1e-6)


def test_kernels_refuse_a_cache_folder_others_can_write(tmp_path, monkeypatch):
    # A library loaded from a folder another user can write would run their code: refused, and
    # the warps fall back to PyTorch.
    from vsrdb.ops import kernels

    shared = tmp_path / "cache"
    (shared / "vsrdb" / "kernels").mkdir(parents=True)
    (shared / "vsrdb" / "kernels").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    monkeypatch.delenv("VSRDB_KERNELS_DIR", raising=False)
    with pytest.raises(OSError, match="writable by group and others"):
        kernels.build()
    monkeypatch.setattr(kernels, "_state", {})
    assert kernels.multi_flow_warp() is None and "writable by group and others" in kernels.why_not()


def test_every_kernel_source_ships_in_the_package():
    # An installed vsrdb compiles ops/csrc on the user's machine: a source or header left out of
    # the package data would make every build fail there (and restore fall back to PyTorch).
    import fnmatch
    import re

    from vsrdb.ops import kernels

    package = Path(kernels.__file__).resolve().parents[1]
    pyproject = (package.parents[1] / "pyproject.toml").read_text()  # (tomllib is Python 3.11+)
    section = pyproject.split("[tool.setuptools.package-data]", 1)[1].split("\n[", 1)[0]
    globs = re.findall(r'"([^"]+)"', section)
    files = [path.relative_to(package).as_posix() for path in kernels._SOURCES + kernels._HEADERS]
    assert len(files) == len(list((package / "ops" / "csrc").iterdir()))  # every file there is read by the build
    for name in files:
        assert any(fnmatch.fnmatch(name, glob) for glob in globs), name


def test_kernels_step_aside_when_turned_off_or_unbuildable(monkeypatch):
    from vsrdb.ops import kernels

    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("VSRDB_KERNELS", "0")
    assert kernels.multi_flow_warp() is None and kernels.why_not() == "VSRDB_KERNELS=0"
    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.delenv("VSRDB_KERNELS")

    def no_compiler(**_):
        raise RuntimeError("Error building extension 'vsrdb_kernels': c++: not found")

    monkeypatch.setattr("torch.utils.cpp_extension.load", no_compiler)
    assert not kernels.available() and "c++: not found" in kernels.why_not()


def test_image_flow_warp_scale_upsamples_flow_times_scale():
    img = torch.rand(1, 2, 3, 8, 12)
    fm = torch.zeros(1, 2, 3, 2, 3)
    fm[:, :, 0] = 0.25  # LR quarter pixel = one HR pixel at x4
    fm[:, :, 2] = 20.0  # mask ~1
    validity, warped = image_flow_warp(img, fm, scale=4)
    assert torch.allclose(warped[..., :-1], img[..., 1:], atol=1e-5)
    assert torch.allclose(validity[..., :-1], torch.ones_like(validity[..., :-1]), atol=1e-5)
    assert validity[..., -1].abs().max() < 1e-5  # sampled outside the frame


def test_downsampling_kernels_are_a_joint_softmax():
    k = normalize_downsampling_kernels(torch.randn(2, 3, 16, 5, 6))
    assert (k >= 0).all()
    assert torch.allclose(k.sum(dim=(1, 2)), torch.ones(2, 5, 6), atol=1e-5)


def test_upsampling_kernels_sum_to_one_and_may_be_negative():
    k = normalize_upsampling_kernels(torch.randn(1, 3, 4 * 4 * 9, 5, 6) * 3, scale=4)
    assert k.shape == (1, 3, 16, 9, 5, 6)
    assert torch.allclose(k.sum(dim=(1, 3)), torch.ones(1, 16, 5, 6), atol=1e-5)
    assert (k < 0).any()


def _slow_downsample(warped, validity, kernels, s):
    b, t, c, hh, ww = warped.shape
    k = int(kernels.shape[2] ** 0.5)
    p = (k - s) // 2
    h, w = hh // s, ww // s
    wp = F.pad(warped.reshape(b * t, c, hh, ww), (p, p, p, p), mode="replicate").reshape(b, t, c, hh + 2 * p, ww + 2 * p)
    vp = F.pad(validity.reshape(b * t, -1, hh, ww), (p, p, p, p), mode="replicate").reshape(b, t, -1, hh + 2 * p, ww + 2 * p)
    out = torch.zeros(b, c, h, w)
    for y in range(h):
        for x in range(w):
            kern = kernels[:, :, :, y, x].reshape(b, t, 1, k, k)
            num = (wp[:, :, :, y * s:y * s + k, x * s:x * s + k] * kern).sum(dim=(1, 3, 4))
            den = (vp[:, :, :1, y * s:y * s + k, x * s:x * s + k] * kern).sum(dim=(1, 3, 4))
            out[:, :, y, x] = num / (den + 1e-8)
    return out


def test_dynamic_downsample_matches_window_loop():
    b, t, s, k, h, w = 2, 3, 4, 8, 3, 4
    warped = torch.rand(b, t, 3, s * h, s * w)
    validity = torch.rand(b, t, 1, s * h, s * w) + 0.5
    kernels = normalize_downsampling_kernels(torch.randn(b, t, k * k, h, w))
    out = dynamic_downsample(warped, validity.expand(-1, -1, 3, -1, -1), kernels, s)
    assert out.shape == (b, 3, h, w)
    assert torch.allclose(out, _slow_downsample(warped, validity, kernels, s), atol=1e-5)


def test_dynamic_downsample_of_constant_image_is_constant():
    k = normalize_downsampling_kernels(torch.randn(1, 3, 36, 4, 5))
    hr = torch.full((1, 3, 3, 16, 20), 0.3)
    out = dynamic_downsample(hr, torch.ones_like(hr), k, 4)
    assert torch.allclose(out, torch.full_like(out, 0.3), atol=1e-5)


def test_dynamic_upsample_matches_pixel_loop():
    b, t, c, s, k, h, w = 1, 3, 2, 4, 3, 4, 5
    frames = torch.rand(b, t, c, h, w)
    kernels = normalize_upsampling_kernels(torch.randn(b, t, s * s * k * k, h, w), s)
    out = dynamic_upsample(frames, kernels, s)
    r = k // 2
    padded = F.pad(frames.reshape(b * t, c, h, w), (r, r, r, r), mode="replicate").reshape(b, t, c, h + 2 * r, w + 2 * r)
    for y in range(h):
        for x in range(w):
            for i in range(s):
                for j in range(s):
                    kern = kernels[0, :, i * s + j, :, y, x].reshape(t, 1, k, k)
                    ref = (padded[0, :, :, y:y + k, x:x + k] * kern).sum(dim=(0, 2, 3))
                    assert torch.allclose(out[0, :, y * s + i, x * s + j], ref, atol=1e-5)


def test_dynamic_upsample_with_kernels_on_a_coarser_grid_matches_pixel_loop():
    """x2 and x1: kernels come per cell of u x u frame pixels, (u*s)^2 sub-pixel kernels each; HR
    pixel (r, q) filters the window centred on frame pixel (r // s, q // s) with the kernel of cell
    (r // (u*s), q // (u*s)), sub-pixel (r % (u*s), q % (u*s))."""
    from vsrdb.ops.dynamic_filter import dynamic_upsample_streamed

    for s, u, k in ((2, 2, 3), (1, 4, 3), (1, 4, 5), (2, 2, 5)):
        b, t, c, h, w = 1, 3, 2, 2, 3  # h, w: the grid
        frames = torch.rand(b, t, c, u * h, u * w)
        logits = torch.randn(b, t, (u * s) ** 2 * k * k, h, w)
        kernels = normalize_upsampling_kernels(logits, u * s)
        out = dynamic_upsample(frames, kernels, s)
        assert out.shape == (b, c, s * u * h, s * u * w)
        r = k // 2
        padded = F.pad(frames.reshape(b * t, c, u * h, u * w), (r, r, r, r), mode="replicate")
        for y in range(s * u * h):
            for x in range(s * u * w):
                n = u * s
                kern = kernels[0, :, (y % n) * n + x % n, :, y // n, x // n].reshape(t, 1, k, k)
                fy, fx = y // s, x // s
                ref = (padded[:, :, fy:fy + k, fx:fx + k] * kern).sum(dim=(0, 2, 3))
                assert torch.allclose(out[0, :, y, x], ref, atol=1e-5), (s, u, y, x)
        streamed = dynamic_upsample_streamed(lambda i: (frames[:, i], logits[:, i]), t, s)
        assert torch.allclose(streamed, out, atol=1e-5)


@pytest.mark.parametrize("kernel", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("s, u, k, c, t", [(4, 1, 5, 3, 3), (4, 1, 3, 1, 1), (2, 2, 5, 3, 3), (2, 2, 3, 4, 2),
                                           (1, 4, 5, 3, 3), (1, 4, 7, 2, 3), (3, 1, 3, 3, 2), (1, 3, 5, 3, 1)])
def test_inference_upsampling_equals_the_definition(kernel, dtype, s, u, k, c, t, monkeypatch):
    # Eager CPU inference streams FGDF upsampling through ops/csrc/fgdf_taps.cpp where it is built
    # (16 output pixels to a register: widths here leave a partial register and span several), or
    # through the PyTorch forms; both must give dynamic_upsample's numbers at every scale, from
    # bf16 kernels and frames too, with frames in any layout and T = 1 (first frame is the last).
    from vsrdb.ops import kernels
    from vsrdb.ops.dynamic_filter import dynamic_upsample_streamed

    if kernel and not kernels.available():
        pytest.skip(f"vsrdb's kernels are not built here: {kernels.why_not()}")
    calls = []
    if kernel:
        built = kernels.fgdf_taps()
        assert built is not None

        def counted(*args):
            calls.append(args[-2:])  # (first, n)
            return built(*args)

        monkeypatch.setattr(kernels, "fgdf_taps", lambda: counted)
    else:
        monkeypatch.setattr(kernels, "fgdf_taps", lambda: None)
    torch.manual_seed(s * 100 + u * 10 + k)
    b, h, w = 2, 3, 13  # the kernel grid; output rows of s*u*13 pixels
    frames = torch.rand(b, t, c, u * h, u * w).to(dtype)
    if c > 1:  # a frame whose columns are not adjacent in memory
        frames = frames.contiguous(memory_format=torch.channels_last_3d)
    logits = (torch.randn(b, t, (u * s) ** 2 * k * k, h, w) * 0.3).to(dtype)
    heads = [logits[:, i].contiguous(memory_format=torch.channels_last) for i in range(t)]
    expected = dynamic_upsample(frames.float(), normalize_upsampling_kernels(logits.float(), u * s), s)
    with torch.inference_mode():
        out = dynamic_upsample_streamed(lambda i: (frames[:, i], heads[i]), t, s)
    assert out.dtype == torch.float32 and out.shape == (b, c, s * u * h, s * u * w)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-5)
    if kernel:  # one call per frame: the first writes, the last normalises over all T*k*k taps
        assert calls == [(i == 0, t * k * k if i == t - 1 else 0) for i in range(t)]


def test_a_centre_tap_kernel_at_x1_gives_back_the_centre_frame():
    """The identity is reachable at x1: FGDF at the input's size can leave a sharp frame as it is."""
    t, k, u, h, w = 3, 3, 4, 2, 3
    frames = torch.rand(1, t, 3, u * h, u * w)
    kernels = torch.zeros(1, t, u * u, k * k, h, w)
    kernels[:, t // 2, :, k * k // 2] = 1.0
    assert torch.equal(dynamic_upsample(frames, kernels, 1), frames[:, t // 2])


def test_dynamic_downsample_shares_each_grid_cells_kernel_among_its_pixels():
    for s, k, u in ((1, 5, 4), (2, 6, 2)):  # x1 and x2
        b, t, h, w = 2, 3, 2, 3
        hr = torch.rand(b, t, 3, s * u * h, s * u * w)
        validity = torch.rand(b, t, 1, s * u * h, s * u * w) + 0.5
        grid = normalize_downsampling_kernels(torch.randn(b, t, k * k, h, w))
        out = dynamic_downsample(hr, validity.expand(-1, -1, 3, -1, -1), grid, s)
        full = grid.repeat_interleave(u, dim=-2).repeat_interleave(u, dim=-1)
        assert out.shape == (b, 3, u * h, u * w)
        assert torch.allclose(out, _slow_downsample(hr, validity, full, s), atol=1e-5), (s, u)
