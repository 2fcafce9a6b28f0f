"""Which native scale restores a job: the smallest that reaches the output size asked for.

A x4 model asked for a x2 output computes four times the pixels it keeps; a model trained at
x2 computes only those (docs/restore.md, "Native scales"). Built-in models that ship at several
scales (``checkpoints.NATIVE_SCALES``) are picked from here; any other ``--weights`` is one
model at its own scale.
"""

from __future__ import annotations

from typing import Iterable

from ..checkpoints import native_scales
from ..errors import InputError

__all__ = ["needed_scale", "pick_weights", "check_scale"]


def needed_scale(outscale: float | None, size: tuple[int, int] | None,
                 input_sizes: Iterable[tuple[int, int]]) -> float | None:
    """The output scale asked for: ``outscale``, or for ``size`` (width, height) the largest
    ratio over the inputs' (height, width); None when neither is given (the model's own)."""
    if outscale is not None:
        return outscale
    if size is None:
        return None
    width, height = size
    ratios = [max(width / w, height / h) for h, w in input_sizes]
    return max(ratios) if ratios else None


def pick_weights(weights: str, *, scale: int | None, needed: float | None) -> tuple[str, str]:
    """What ``load_checkpoint`` gets for ``weights`` at the forced ``scale`` or the ``needed``
    output scale, and a line for the user ("" when there is nothing to say).

    Without ``scale``, only the native scales restore picks by itself are considered
    (``checkpoints.AUTO_SCALES``); a smaller one that ships but is not picked is mentioned.
    Raises InputError when ``scale`` is forced and a built-in model does not ship at it (a
    checkpoint folder's own scale is checked once it is loaded: ``check_scale``)."""
    offered = native_scales(weights)
    if not offered:
        return weights, ""
    if scale is not None:
        if scale not in offered:
            raise InputError(f"--scale {scale}: {weights} ships at {_listing(offered)} in this installation "
                             "(vsrdb info lists the built-in models)")
        return offered[scale], f"{offered[scale]} (native x{scale}, --scale {scale})"
    if needed is None:
        return weights, ""
    auto = native_scales(weights, auto=True) or {max(offered): offered[max(offered)]}
    chosen = _smallest_reaching(auto, needed)
    faster = _smallest_reaching(offered, needed)
    if faster < chosen:
        runs = f"{weights} (x{chosen}), shrunk to the size asked for" if offered[chosen] == weights else \
            f"{offered[chosen]} (native x{chosen})"
        return offered[chosen], (f"{runs}; --scale {faster} runs {offered[faster]} natively, faster "
                                 "(vsrdb info says what it trades)")
    if offered[chosen] == weights:
        return weights, ""
    return offered[chosen], f"{offered[chosen]} (native x{chosen}: the smallest of {_listing(auto)} that " \
                            f"reaches the output size asked for)"


def _smallest_reaching(offered: dict[int, str], needed: float) -> int:
    reaching = [s for s in sorted(offered) if s >= needed - 1e-9]
    return reaching[0] if reaching else max(offered)


def check_scale(model_scale: int, weights: str, scale: int | None) -> None:
    """``--scale`` with weights of one scale: it must be theirs."""
    if scale is not None and model_scale != scale:
        raise InputError(f"--scale {scale}: {weights} is a x{model_scale} model (--outscale or --size make smaller "
                         "outputs from it)")


def _listing(offered: dict[int, str]) -> str:
    return ", ".join(f"x{s}" for s in sorted(offered, reverse=True))
