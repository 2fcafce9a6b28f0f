"""This process's place among torchrun's processes, and the little coordination a batch needs.

Under ``torchrun`` the first process plans every job and the others get the plan; work units
are dealt out by rank; results come back to the first. gloo only coordinates (plans,
barriers, results): the work itself goes through files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

__all__ = ["Dist"]


@dataclass
class Dist:
    """This process's place among torchrun's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    local_world: int = 1

    @classmethod
    def from_env(cls) -> "Dist":
        env = os.environ
        return cls(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)),
                   int(env.get("LOCAL_WORLD_SIZE", 1)))

    def start(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            # gloo only coordinates here (plans, barriers, results); the work is in the files.
            # A long wait at the final barrier is normal when ranks finish unevenly.
            dist.init_process_group("gloo", timeout=timedelta(days=7))

    def stop(self) -> None:
        if self.world > 1:
            import torch.distributed as dist

            dist.destroy_process_group()

    def broadcast(self, obj):
        if self.world == 1:
            return obj
        import torch.distributed as dist

        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather(self, obj) -> list:
        if self.world == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world
        dist.all_gather_object(out, obj)
        return out
