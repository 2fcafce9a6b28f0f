"""Models by name: ``build("fmanet")``, ``build("hoffr")``, ``build("jffra", num_seq=5)``."""

from .fmanet import FMANet, FMANetConfig, NetD, NetR
from .hoffr import HOFFR, HOFFRConfig
from .jffra import JFFRA, JFFRAConfig
from .registry import build, list_models, register_model

__all__ = ["build", "list_models", "register_model", "FMANet", "FMANetConfig", "NetD", "NetR", "HOFFR",
           "HOFFRConfig", "JFFRA", "JFFRAConfig"]
