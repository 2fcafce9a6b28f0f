"""Restoring videos: the streaming ``Restorer`` (frames in, frames out), restoration jobs
(one input to one output, resumable, in segments) and batches of jobs spread over processes."""

from .restorer import Restorer, TilePlan, estimate_forward_bytes, pick_device, plan_tiles, use_heap_allocator

__all__ = ["Restorer", "TilePlan", "estimate_forward_bytes", "pick_device", "plan_tiles", "use_heap_allocator"]
