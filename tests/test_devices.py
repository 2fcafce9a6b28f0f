"""The GPU path, checked without a GPU: every preset's training loss with backward, and the
streaming Restorer (the forward pass, tiled for one preset of each kind of stream) run with the
model on PyTorch's ``meta`` device. A tensor made on the
CPU inside code that should follow the model's device meets a meta tensor in some operation and
fails here, as it would on CUDA. Hops to the CPU that are meant (OpenCV's pseudo-GT flow, the
Restorer handing frames back) are let through by ``cpu_hop``, which gives zeros for a meta tensor's
values, since a meta tensor has none.

On a machine with a GPU, ``benchmarks/gpu_check.py`` runs the real thing (tests marked ``cuda``
included)."""

from __future__ import annotations

import pytest
import torch

import vsrdb
from vsrdb.restore import Restorer

from test_families import _batch


@pytest.fixture
def cpu_hop(monkeypatch):
    """``meta_tensor.cpu()`` -> zeros of its shape on the CPU (a meta tensor has no data)."""
    real = torch.Tensor.cpu

    def cpu(self, *args, **kwargs):
        return torch.zeros(self.shape, dtype=self.dtype) if self.is_meta else real(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "cpu", cpu)


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_training_loss_and_backward_follow_the_models_device(name, cpu_hop):
    probe = vsrdb.build(name)
    for stage in probe.training_stages(probe.loss_weights()):
        model = vsrdb.build(name, **stage.build_args).to("meta").train()
        batch = {k: v.to("meta") for k, v in _batch(probe, stage.window, b=2).items()}
        loss, terms = model.training_loss(model, batch, stage, probe.loss_weights())
        loss.backward()
        assert loss.device.type == "meta" and "total" in terms
        grads = [p.grad for _, part in model.trainable_parts(stage) for p in part.parameters()]
        assert grads and all(g is not None and g.device.type == "meta" for g in grads), f"{name}/{stage.name}"


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (benchmarks/gpu_check.py)")


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("name", vsrdb.list_models())
def test_cuda_restore_matches_the_cpu_and_trains(name):
    model = vsrdb.build(name).eval()
    frames = [torch.rand(3, 10, 14) for _ in range(5)]
    on_cpu = list(Restorer(model, device="cpu", precision="fp32").run(iter(frames)))
    for precision, tol in (("fp32", 1e-3), ("bf16", 0.1), ("fp16", 0.05)):
        got = list(Restorer(model, device="cuda", precision=precision).run(iter(frames)))
        assert all(torch.isfinite(g).all() and (g.float() - c).abs().max() < tol for g, c in zip(got, on_cpu)), precision
    probe = vsrdb.build(name)
    for stage in probe.training_stages(probe.loss_weights()):
        m = vsrdb.build(name, **stage.build_args).cuda().train()
        batch = {k: v.cuda() for k, v in _batch(probe, stage.window, b=2).items()}
        loss, _ = m.training_loss(m, batch, stage, probe.loss_weights())
        loss.backward()
        assert torch.isfinite(loss)


TILED = ("fmanet-tiny", "hoffr-cpu", "jffra-cpu", "fmanetpp-cpu")  # one of each kind of stream, tiled


@pytest.mark.parametrize("name", vsrdb.list_models())
def test_the_restorer_follows_its_device(name, cpu_hop):
    model = vsrdb.build(name).eval()
    # Meta kernels run in Python, slowly: the full presets stream untiled, one of each kind tiled.
    tiles = {"tile": 6, "overlap": 2} if name in TILED else {}
    restorer = Restorer(model, device=torch.device("meta"), precision="fp32", **tiles)
    frames = [torch.rand(3, 10, 9) for _ in range(3)]
    outs = list(restorer.run(iter(frames)))
    assert len(outs) == 3 and all(o.device.type == "cpu" and o.shape == (3, 40, 36) for o in outs)
    assert restorer.plan.ys != (0,) or name not in TILED
    assert next(model.parameters()).device.type == "cpu"  # the caller's model is not moved
