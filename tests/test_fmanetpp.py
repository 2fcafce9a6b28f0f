"""FMA-Net++: shapes, ETM, the ETE's contrastive loss, FGDF re-degradation, chunked restoration."""

import pytest
import torch

import vsrdb
from vsrdb.models.fmanetpp import ExposureModulation, degrade, supervised_contrastive_loss
from vsrdb.restore import Restorer


def test_full_preset_has_the_papers_parameter_count():
    n = sum(p.numel() for p in vsrdb.build("fmanetpp").parameters())
    assert abs(n - 12.8e6) <= 0.05 * 12.8e6, n


@pytest.mark.parametrize("size", [(13, 11), (8, 17)])
def test_shapes_for_ten_frames_and_odd_sizes(size):
    h, w = size
    model = vsrdb.build("fmanetpp-cpu").eval()
    lr, hr = torch.rand(2, 3, 10, h, w), torch.rand(2, 3, 10, 4 * h, 4 * w)
    with torch.no_grad():
        out = model(lr, hr)
    k2 = model.config.ds_kernel_size ** 2
    assert out["output"].shape == (2, 3, 10, 4 * h, 4 * w)
    assert out["recon"].shape == (2, 3, 10, h, w)
    assert out["image_flow"].shape == (2, 6, 10, h, w) and out["kernels_d"].shape == (2, 3 * k2, 10, h, w)
    assert out["embedding"].shape == (2, 10, model.config.embed_dim)
    assert out["hr_warp"].shape == (2, 3, 2, 10, 4 * h, 4 * w)


def test_etm_is_the_identity_at_zero_alpha_and_beta_and_modulates_otherwise():
    etm = ExposureModulation(8, 6)
    feat, u = torch.randn(4, 6, 5, 5), torch.randn(4, 8)
    assert torch.equal(etm(feat, u), feat)  # zero-initialised last layer: alpha = beta = 0
    with torch.no_grad():
        etm.mlp[-1].bias[:6] = 1.0   # alpha = 1: doubles the features
        etm.mlp[-1].bias[6:] = 0.5   # beta = 0.5
    assert torch.allclose(etm(feat, u), 2 * feat + 0.5)


def test_contrastive_loss_is_lower_for_embeddings_grouped_by_exposure():
    torch.manual_seed(0)
    labels = torch.tensor([1, 1, 2, 2, 3, 3, 4, 4, 5, 5])
    centres = torch.randn(5, 16)
    grouped = centres[labels - 1] + 0.05 * torch.randn(10, 16)
    shuffled = grouped[torch.tensor([0, 2, 4, 6, 8, 1, 3, 5, 7, 9])]  # the same points, wrong labels
    good = supervised_contrastive_loss(grouped, labels, 0.5)
    bad = supervised_contrastive_loss(shuffled, labels, 0.5)
    assert good < bad - 0.5
    # Eq. S1 by hand for a batch of three: anchors 0 and 1 share a label, anchor 2 has no positive.
    z = torch.nn.functional.normalize(grouped[:3], dim=1)
    sims = z @ z.t() / 0.5
    term0 = -(sims[0, 1] - torch.logsumexp(sims[0, [1, 2]], 0))
    term1 = -(sims[1, 0] - torch.logsumexp(sims[1, [0, 2]], 0))
    got = supervised_contrastive_loss(grouped[:3], torch.tensor([1, 1, 2]), 0.5)
    assert torch.isclose(got, (term0 + term1) / 2, atol=1e-6)


def test_fgdf_with_a_centre_delta_kernel_and_still_frames_is_subsampling():
    """K^D all on frame i's pixel at the kernel's centre, no motion: X_hat is Y_i sampled at stride s."""
    k, s, h, w = 8, 4, 5, 6
    hr = torch.rand(1, 4, 3, s * h, s * w)
    image_flow = torch.zeros(1, 4, 6, h, w)
    image_flow[:, :, 2::3] = 10.0  # visible
    kernels = torch.full((1, 4, 3 * k * k, h, w), -1e4)
    pad = (k - s) // 2
    kernels[:, :, k * k + pad * k + pad] = 1e4  # frame i (the middle of three), offset (pad, pad)
    recon, warped = degrade(hr, image_flow, kernels, s)
    assert torch.allclose(recon, hr[..., ::s, ::s], atol=1e-5)
    # [B, T, (from i+1, from i-1), 3, sH, sW]; at the start, frame 0's "previous" is itself
    assert torch.allclose(warped[:, 0, 1], hr[:, 0], atol=1e-3) and torch.allclose(warped[:, 0, 0], hr[:, 1], atol=1e-3)


def test_chunked_restoration_equals_the_whole_sequence():
    torch.manual_seed(0)
    model = vsrdb.build("fmanetpp-cpu").eval()
    frames = [torch.rand(3, 10, 12) for _ in range(21)]
    with torch.no_grad():
        whole = model.restore_sequence(torch.stack(frames, dim=1)[None])[0]
    restorer = Restorer(model)
    restorer.sequence_chunk = 4  # many chunks, each with reach frames of context
    outs = list(restorer.run(iter(frames)))
    assert len(outs) == 21
    assert max((o - whole[:, i]).abs().max().item() for i, o in enumerate(outs)) < 1e-4
    # A resumed segment (frames 9..14, given from 9 - reach) gives the same frames.
    r = model.frames.reach
    part = list(Restorer(model).run(iter(frames[9 - r:]), first=9 - r, start=9, stop=15))
    assert len(part) == 6 and all(torch.allclose(o, whole[:, 9 + i], atol=1e-4) for i, o in enumerate(part))


def test_neighbour_flows_point_to_where_each_pixel_is_in_the_next_and_previous_frames():
    import torch.nn.functional as F

    from vsrdb.data.flow import neighbour_flows

    base = F.interpolate(torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(1)), size=(48, 64),
                         mode="bicubic", align_corners=False).clamp(0, 1)
    frames = torch.stack([torch.roll(base, shifts=2 * i, dims=3)[0] for i in range(3)], dim=1)[None]  # 2 px right
    flows = neighbour_flows(frames)
    inner = (slice(None), slice(8, -8), slice(8, -8))
    assert flows.shape == (1, 4, 3, 48, 64)
    assert abs(flows[0, 0, 1][inner[1:]].median().item() - 2) < 0.3   # towards i+1: +2 px
    assert abs(flows[0, 2, 1][inner[1:]].median().item() + 2) < 0.3   # towards i-1: -2 px
    assert torch.equal(flows[0, 0:2, 2], torch.zeros(2, 48, 64))      # the last frame has no next
