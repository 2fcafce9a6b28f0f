"""FMA-Net losses: the weights of Eqs. 8-9, and gradients through the model."""

import pytest
import torch

import vsrdb
from vsrdb.models.fmanet import FMANetLossWeights, fmanet_loss


def fake_outputs(b=1, t=3, h=4, w=5, s=4):
    z = lambda *shape: torch.zeros(*shape)  # noqa: E731
    return {"recon": z(b, 3, h, w), "hr_warp": z(b, 3, t, s * h, s * w), "image_flow": z(b, 2, t, h, w),
            "anchor_d": z(b, 3, t, h, w), "output": z(b, 3, s * h, s * w), "lr_warp": z(b, 3, t, h, w),
            "anchor_r": z(b, 3, t, h, w)}


@pytest.mark.parametrize("stage", [1, 2])
def test_each_term_has_its_released_weight(stage):
    out = fake_outputs()
    ones = lambda x: torch.ones_like(x)  # noqa: E731
    lr, hr = torch.ones(1, 3, 3, 4, 5), torch.ones(1, 3, 3, 16, 20)
    # Every prediction is 0 and every target 1, except the flow target 2: each l1 term is 1 (flow 2).
    total, terms = fmanet_loss(out, lr=lr, hr=hr, lr_sharp=ones(lr), flow_gt=2 * torch.ones(1, 2, 3, 4, 5),
                               stage=stage)
    loss_d = 1 + 0.1 * 1 + 1e-4 * 2 + 0.1 * 1
    assert terms["flow"] == pytest.approx(2.0)
    assert terms["loss_d"] == pytest.approx(loss_d)
    expected = loss_d if stage == 1 else 1 + 0.1 * loss_d + 0.1 + 0.1
    assert total.item() == pytest.approx(expected)
    assert ("restore" in terms) == (stage == 2)


def test_perfect_predictions_give_zero():
    out = fake_outputs()
    lr, hr = torch.zeros(1, 3, 3, 4, 5), torch.zeros(1, 3, 3, 16, 20)
    total, _ = fmanet_loss(out, lr=lr, hr=hr, lr_sharp=torch.zeros_like(lr), flow_gt=torch.zeros(1, 2, 3, 4, 5),
                           stage=2, weights=FMANetLossWeights())
    assert total.item() == 0


def test_loss_drives_every_parameter():
    model = vsrdb.build("fmanet-tiny")
    lr, hr = torch.rand(2, 3, 3, 8, 8), torch.rand(2, 3, 3, 32, 32)
    total, _ = fmanet_loss(model(lr, hr), lr=lr, hr=hr, lr_sharp=torch.rand_like(lr),
                           flow_gt=torch.randn(2, 2, 3, 8, 8), stage=2)
    total.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
