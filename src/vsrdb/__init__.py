"""vsrdb: joint video super-resolution and deblurring (FMA-Net and friends)."""

from .checkpoints import CheckpointError, WeightsMeta, load_checkpoint, save_checkpoint
from .models import build, list_models

__version__ = "0.1.0"
__all__ = ["build", "list_models", "load_checkpoint", "save_checkpoint", "CheckpointError", "WeightsMeta",
           "__version__"]
