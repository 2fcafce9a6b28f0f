"""vsrdb: joint video super-resolution and deblurring (FMA-Net and friends)."""

from .checkpoints import load_checkpoint, save_checkpoint
from .errors import CheckpointError, ConfigError, InputError, VsrdbError
from .models import (FrameNeed, RestorationModel, TrainingStage, WeightsMeta, build, import_model_module, list_models,
                     register_model)

__version__ = "0.1.0"
__all__ = ["build", "list_models", "register_model", "import_model_module", "load_checkpoint", "save_checkpoint",
           "RestorationModel", "FrameNeed", "TrainingStage", "WeightsMeta", "VsrdbError", "InputError",
           "CheckpointError", "ConfigError", "__version__"]
