"""Models by name: ``build("fmanet")``, ``build("hoffr")``, ``build("jffra", num_seq=5)``.

Every family subclasses ``RestorationModel`` (``family.py``): the one interface the trainer,
the Restorer, evaluate and reports use.
"""

from .family import FrameNeed, RestorationModel, TrainingStage
from .fmanet import FMANet, FMANetConfig, NetD, NetR
from .hoffr import HOFFR, HOFFRConfig
from .jffra import JFFRA, JFFRAConfig
from .registry import build, from_preset, import_model_module, list_models, register_model, register_release_format
from .weights import WeightsMeta

__all__ = ["build", "list_models", "register_model", "register_release_format", "import_model_module", "from_preset",
           "RestorationModel", "FrameNeed", "TrainingStage", "WeightsMeta", "FMANet", "FMANetConfig", "NetD",
           "NetR", "HOFFR", "HOFFRConfig", "JFFRA", "JFFRAConfig"]
