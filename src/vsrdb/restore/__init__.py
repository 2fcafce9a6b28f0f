"""Restoring videos: the streaming ``Restorer`` (frames in, frames out), restoration jobs
(one input to one output, resumable, in segments) and batches of jobs spread over processes."""

from ..devices import pick_device
from .batch import restore_video
from .restorer import Restorer, TilePlan, plan_tiles

__all__ = ["Restorer", "TilePlan", "pick_device", "plan_tiles", "restore_video"]
