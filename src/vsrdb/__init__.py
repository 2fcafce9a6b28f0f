"""vsrdb: joint video super-resolution and deblurring (FMA-Net and friends)."""

import sys as _sys

# Run as the ``vsrdb`` command (its script, or ``python -m vsrdb`` while the package loads): a
# Ctrl-C before the command is running (torch takes a second or two to import) is recorded and
# acted on once it runs (see ``interrupts``). The hook covers one that comes before even that:
# one line and the status of a SIGINT instead of a traceback. Library users keep their hook.
if _sys.argv and (_sys.argv[0] == "-m" or _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1] in ("vsrdb", "vsrdb.exe")):
    from . import interrupts as _interrupts

    def _quiet_interrupt(kind, value, tb, _previous=_sys.excepthook):
        if issubclass(kind, KeyboardInterrupt) or _interrupts.requested():
            print("vsrdb: interrupted", file=_sys.stderr)
            _sys.stderr.flush()
            _interrupts.exit_as_interrupted()
        else:
            _previous(kind, value, tb)

    _sys.excepthook = _quiet_interrupt
    _interrupts.install()

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
