"""When inference-only fast paths may run."""

from __future__ import annotations

import torch

__all__ = ["eager_inference"]


def eager_inference() -> bool:
    """True in an eager run without gradients.

    The fast paths this guards write in place, loop over frames or strips in Python, or call
    oneDNN kernels that have no fake-tensor rules. Under autograd they would break the graph;
    under ``torch.export``/``torch.compile`` a Python loop over a dimension fixes that
    dimension's size in the traced graph (an ONNX file that only takes the example's batch).
    """
    return not torch.is_grad_enabled() and not torch.compiler.is_compiling()
