"""FMA-Net model: presets, shapes, input validation, gradients, the Eq. 5 ablation switch."""

import pytest
import torch

import vsrdb
from vsrdb.models import FMANetConfig

RELEASED_COUNTS = [
    ("fmanet", {}, 9_766_503),
    ("fmanet-s", {}, 7_569_603),
    ("fmanet", {"num_frma": 1}, 6_471_153),
    ("fmanet", {"num_flow": 1}, 9_322_623),
    ("fmanet", {"num_flow": 5}, 9_518_643),
]


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name,overrides,count", RELEASED_COUNTS)
def test_parameter_counts_equal_the_release(name, overrides, count):
    assert n_params(vsrdb.build(name, **overrides)) == count


def test_presets_and_overrides():
    assert {"fmanet", "fmanet-s", "fmanet-cpu", "fmanet-tiny"} <= set(vsrdb.list_models())
    model = vsrdb.build("fmanet", num_flow=5)
    assert model.config.num_flow == 5 and model.config.num_frma == 4
    assert vsrdb.build("fmanet-s").config == FMANetConfig(num_frma=2)
    with pytest.raises(ValueError, match="unknown model"):
        vsrdb.build("fmanet-xl")
    with pytest.raises(ValueError, match="num_flows"):
        vsrdb.build("fmanet", num_flows=5)


@pytest.mark.parametrize("bad,match", [
    ({"dim": 20}, "divisible by num_seq"),
    ({"num_flow": 4}, "divisible by num_flow"),
    ({"ds_kernel_size": 7}, "must be even"),
    ({"scale": 3}, "scale must be 1, 2 or 4"),
    ({"scale": 1, "ds_kernel_size": 8}, "must be even"),  # k_d - s even: an odd k_d at x1
    ({"layernorm_type": "Batch"}, "layernorm_type"),
])
def test_impossible_configs_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        vsrdb.build("fmanet-tiny", **bad)


@pytest.mark.parametrize("t,h,w,b", [(3, 8, 10, 2), (5, 6, 7, 1)])
def test_output_shapes(t, h, w, b):
    model = vsrdb.build("fmanet-tiny", num_seq=t, dim=30 if t == 5 else 18).eval()
    lr, hr = torch.rand(b, 3, t, h, w), torch.rand(b, 3, t, 4 * h, 4 * w)
    with torch.no_grad():
        out = model(lr, hr)
        plain = model(lr)
    assert out["output"].shape == (b, 3, 4 * h, 4 * w)
    assert out["recon"].shape == (b, 3, h, w)
    assert out["hr_warp"].shape == (b, 3, t, 4 * h, 4 * w)
    assert out["image_flow"].shape == (b, 2, t, h, w)
    for key in ("anchor_d", "anchor_r", "lr_warp"):
        assert out[key].shape == (b, 3, t, h, w)
    assert "recon" not in plain
    assert torch.allclose(plain["output"], out["output"])  # hr only adds the training outputs


def test_stage_one_is_net_d_alone():
    model = vsrdb.build("fmanet-tiny", stage=1)
    assert model.net_r is None
    assert n_params(model) == n_params(model.net_d)
    out = model(torch.rand(1, 3, 3, 8, 8), torch.rand(1, 3, 3, 32, 32))
    assert "output" not in out and out["recon"].shape == (1, 3, 8, 8)


@pytest.mark.parametrize("lr,hr,match", [
    (torch.rand(3, 3, 8, 8), None, "5-D"),
    (torch.rand(1, 1, 3, 8, 8), None, "3 channels"),
    (torch.rand(1, 3, 5, 8, 8), None, "T=3"),
    (torch.rand(1, 3, 3, 2, 8), None, "at least"),
    (torch.rand(1, 3, 3, 8, 8), torch.rand(1, 3, 3, 16, 16), r"\(1, 3, 3, 32, 32\)"),
    (torch.rand(1, 3, 3, 8, 8), torch.rand(2, 3, 3, 32, 32), "hr must have shape"),
])
def test_wrong_inputs_raise_clear_value_errors(lr, hr, match):
    model = vsrdb.build("fmanet-tiny")
    with pytest.raises(ValueError, match=match):
        model(lr, hr)


@pytest.mark.parametrize("stage", [1, 2])
def test_gradients_reach_every_parameter(stage):
    model = vsrdb.build("fmanet-tiny", stage=stage, bias=True)
    out = model(torch.rand(2, 3, 3, 8, 10), torch.rand(2, 3, 3, 32, 40))
    loss = sum(v.float().abs().mean() for v in out.values())
    loss.backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached: {missing[:5]}"


def _rdb_as_released(rdb, x):
    """The release's RDB: each layer convolves the growing concatenation; a 1x1 fusion plus x."""
    import torch.nn.functional as F

    feats = x
    for layer in rdb.layers:
        w, b = layer.conv.weight[:, :, 0], layer.conv.bias
        feats = torch.cat((feats, F.leaky_relu(F.conv2d(feats, w, b, padding=1), 0.2)), dim=1)
    return F.conv2d(feats, rdb.fuse.weight[:, :, 0], rdb.fuse.bias) + x


@pytest.mark.parametrize("growth, per_layer", [(12, True), (18, False), (5, False)])
@pytest.mark.parametrize("grad", [False, True])
def test_rdb_sum_forms_equal_the_released_concatenations(growth, per_layer, grad):
    # fp32 computes an RDB as sums of per-part convolutions (fmanet-cpu's growth 12 one way, the
    # release's 18 the other), fused in inference: the values and gradients must be the release's.
    from vsrdb.models.blocks import RDB

    torch.manual_seed(0)
    rdb = RDB(20, growth, 3, bias=True)
    assert rdb.per_layer_sums is per_layer
    x = torch.randn(2, 20, 9, 11).contiguous(memory_format=torch.channels_last)
    for p in rdb.parameters():
        p.data.normal_(0, 0.05)
    expected = _rdb_as_released(rdb, x)
    if grad:
        xg = x.clone().requires_grad_()
        got = rdb(xg.unsqueeze(0)).squeeze(0)
        got.square().sum().backward()
        g_ours = [xg.grad] + [p.grad.clone() for p in rdb.parameters()]
        rdb.zero_grad()
        xr = x.clone().requires_grad_()
        _rdb_as_released(rdb, xr).square().sum().backward()
        for a, b in zip(g_ours, [xr.grad] + [p.grad for p in rdb.parameters()]):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * b.abs().max().item())
    else:
        with torch.inference_mode():
            got = rdb(x.unsqueeze(0)).squeeze(0)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_conventional_dynamic_filtering_switch():
    guided = vsrdb.build("fmanet-tiny").eval()
    conventional = vsrdb.build("fmanet-tiny", flow_guided=False).eval()
    conventional.load_state_dict(guided.state_dict())  # same parameters, only Eq. 5 vs Eq. 6
    lr, hr = torch.rand(1, 3, 3, 8, 8), torch.rand(1, 3, 3, 32, 32)
    with torch.no_grad():
        a, b = guided(lr, hr), conventional(lr, hr)
    assert not torch.allclose(a["output"], b["output"])
    assert not torch.allclose(a["recon"], b["recon"])
    assert torch.allclose(a["anchor_d"], b["anchor_d"])  # everything before the filtering is shared


@pytest.mark.parametrize("scale,kd", [(2, 8), (1, 7)])
def test_native_x2_and_x1_shapes_and_training_outputs(scale, kd):
    """At x2 and x1 the body works on the input pixel-unshuffled by u = 4 / s: flows and kernels
    on that grid, images (anchors, warps, re-degradation) at the input's size."""
    u = 4 // scale
    model = vsrdb.build("fmanet-tiny", scale=scale, ds_kernel_size=kd).eval()
    b, t, h, w = 2, 3, 16, 24
    lr, hr = torch.rand(b, 3, t, h, w), torch.rand(b, 3, t, scale * h, scale * w)
    with torch.no_grad():
        out = model(lr, hr)
    assert out["output"].shape == (b, 3, scale * h, scale * w)
    assert out["recon"].shape == (b, 3, h, w) and out["hr_warp"].shape == hr.shape
    for key in ("anchor_d", "anchor_r", "lr_warp"):
        assert out[key].shape == (b, 3, t, h, w)
    for key in ("image_flow", "image_flow_lr"):
        assert out[key].shape == (b, 2, t, h // u, w // u)
    assert out["kernels_d"].shape == (b, kd * kd, t, h // u, w // u)
    with pytest.raises(ValueError, match=f"multiples of {u}"):
        model(torch.rand(1, 3, t, h + 1, w))


@pytest.mark.parametrize("scale,kd", [(2, 8), (1, 7)])
def test_native_scales_restore_any_size_as_forward_does(scale, kd):
    """The lean, streamed inference path equals the training forward; sizes that are not
    multiples of u are padded and cropped back, so the output of a frame's top-left part
    matches the same part restored in a larger frame away from the padding."""
    torch.manual_seed(0)
    model = vsrdb.build("fmanet-tiny", scale=scale, ds_kernel_size=kd).eval()
    lr = torch.rand(1, 3, 3, 16, 20)
    with torch.no_grad():
        assert torch.allclose(model.restore(lr), model(lr)["output"], atol=1e-5)
        odd = model.restore(lr[..., :15, :19])
        features = [model.encode_frame(lr[:, :, i, :15, :19]) for i in range(3)]
        cached = model.restore(lr[..., :15, :19], features=features)
    assert odd.shape == (1, 3, 15 * scale, 19 * scale)
    # Not bit-equal everywhere: oneDNN may pick other convolution kernels for one frame than for
    # three (on an AVX512 EPYC they differ by 1e-7).
    assert torch.allclose(odd, cached, atol=1e-6)


@pytest.mark.parametrize("scale,kd", [(2, 8), (1, 7)])
def test_native_scales_train_every_parameter(scale, kd):
    model = vsrdb.build("fmanet-tiny", scale=scale, ds_kernel_size=kd, bias=True)
    out = model(torch.rand(2, 3, 3, 16, 16), torch.rand(2, 3, 3, 16 * scale, 16 * scale))
    sum(v.float().abs().mean() for v in out.values()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient reached: {missing[:5]}"


def test_native_scales_cost_about_what_x4_costs_per_output_pixel():
    """The body is the same network on a grid a quarter of the output's size at every scale:
    parameters differ only in the first convolutions and the heads that see image channels."""
    x4 = n_params(vsrdb.build("fmanet-cpu"))
    x1 = n_params(vsrdb.build("fmanet-cpu", scale=1))
    assert vsrdb.build("fmanet-cpu", scale=1).config.ds_kernel_size == 11  # k_d - s even
    x2 = n_params(vsrdb.build("fmanet-cpu", scale=2))
    assert x4 < x2 < x1 < 1.15 * x4
