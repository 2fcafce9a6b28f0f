"""Models by name: ``build("fmanet")``, ``build("fmanetpp")``, ``build("hoffr")``, ``build("jffra", num_seq=5)``.

Every family subclasses ``RestorationModel`` (``family.py``): the one interface the trainer,
the Restorer, evaluate and reports use.
"""

from .family import FrameNeed, NoLossWeights, RestorationModel, TrainingStage
from .fmanet import FMANet, FMANetConfig, FMANetLossWeights, NetD, NetR
from .fmanetpp import FMANetPP, FMANetPPConfig, FMANetPPLossWeights
from .hoffr import HOFFR, HOFFRConfig, HOFFRLossWeights
from .jffra import JFFRA, JFFRAConfig, JFFRALossWeights
from .registry import build, from_preset, import_model_module, list_models, register_model, register_release_format
from .weights import WeightsMeta

__all__ = ["build", "list_models", "register_model", "register_release_format", "import_model_module", "from_preset",
           "RestorationModel", "FrameNeed", "TrainingStage", "NoLossWeights", "WeightsMeta", "FMANet", "FMANetConfig",
           "FMANetLossWeights", "NetD", "NetR", "FMANetPP", "FMANetPPConfig", "FMANetPPLossWeights", "HOFFR",
           "HOFFRConfig", "HOFFRLossWeights", "JFFRA", "JFFRAConfig", "JFFRALossWeights"]
