"""vsrdb: joint video super-resolution and deblurring (FMA-Net and friends)."""

import sys as _sys

# Run as the ``vsrdb`` command (its script, or ``python -m vsrdb`` while the package loads): a
# Ctrl-C before the command's own handler is in place (torch takes a second or two to import)
# ends with one line and status 130 instead of a traceback. Library users keep their hook.
if _sys.argv and (_sys.argv[0] == "-m" or _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("vsrdb", "vsrdb.exe")):
    def _quiet_interrupt(kind, value, tb, _previous=_sys.excepthook):
        if issubclass(kind, KeyboardInterrupt):
            print("vsrdb: interrupted", file=_sys.stderr)
        else:
            _previous(kind, value, tb)

    _sys.excepthook = _quiet_interrupt

from .checkpoints import load_checkpoint, save_checkpoint
from .errors import CheckpointError, ConfigError, InputError, VsrdbError
from .models import (
    FrameNeed,
    RestorationModel,
    TrainingStage,
    WeightsMeta,
    build,
    import_model_module,
    list_models,
    register_model,
)

__version__ = "0.1.0"
__all__ = ["build", "list_models", "register_model", "import_model_module", "load_checkpoint", "save_checkpoint",
           "RestorationModel", "FrameNeed", "TrainingStage", "WeightsMeta", "VsrdbError", "InputError",
           "CheckpointError", "ConfigError", "__version__"]
