"""The GPU path, checked without a GPU: every preset's forward pass, training loss with backward,
and the streaming Restorer run with the model on PyTorch's ``meta`` device. A tensor made on the
CPU inside code that should follow the model's device meets a meta tensor in some operation and
fails here, as it would on CUDA. Hops to the CPU that are meant (OpenCV's pseudo-GT flow, the
Restorer handing frames back) are let through by ``CpuHop``, which gives zeros for a meta tensor's
values, since a meta tensor has none.

On a machine with a GPU, ``benchmarks/gpu_check.py`` runs the real thing (tests marked ``cuda``
included)."""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode

import vsrdb
from test_families import H, W, _batch
from vsrdb.restore import Restorer
from vsrdb.train.losses import LossWeights


class CpuHop(TorchFunctionMode):
    """``meta_tensor.cpu()`` -> zeros of its shape on the CPU (a meta tensor has no data)."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.Tensor.cpu and isinstance(args[0], torch.Tensor) and args[0].is_meta:
            return torch.zeros(args[0].shape, dtype=args[0].dtype)
        return func(*args, **kwargs)


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_forward_follows_the_models_device(name):
    model = vsrdb.build(name).to("meta").eval()
    t = model.frames.length
    lr = torch.rand(2, 3, t, H, W, device="meta")
    inputs = {"flows": torch.zeros(2, t, 2, H, W, device="meta")} if model.input_flow else {}
    with torch.no_grad():
        out = model.restore(lr, **inputs)
    assert out.device.type == "meta" and out.shape == (2, 3, model.scale * H, model.scale * W)


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_training_loss_and_backward_follow_the_models_device(name):
    probe = vsrdb.build(name)
    for stage in probe.training_stages(LossWeights()):
        model = vsrdb.build(name, **stage.build_args).to("meta").train()
        batch = {k: v.to("meta") for k, v in _batch(probe, stage.window, b=2).items()}
        with CpuHop():
            loss, terms = model.training_loss(model, batch, stage, LossWeights())
            loss.backward()
        assert loss.device.type == "meta" and "total" in terms
        grads = [p.grad for _, part in model.trainable_parts(stage) for p in part.parameters()]
        assert grads and all(g is not None and g.device.type == "meta" for g in grads), f"{name}/{stage.name}"


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_the_restorer_follows_its_device(name):
    model = vsrdb.build(name).eval()
    restorer = Restorer(model, device=torch.device("meta"), precision="fp32", tile=6, overlap=2)  # tiled
    frames = [torch.rand(3, 10, 14) for _ in range(5)]
    with CpuHop():
        outs = list(restorer.run(iter(frames)))
    assert len(outs) == 5 and all(o.device.type == "cpu" and o.shape == (3, 40, 56) for o in outs)
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is not moved
