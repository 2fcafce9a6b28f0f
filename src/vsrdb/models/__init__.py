"""Models by name: ``build("fmanet")``, ``build("fmanet-s")``, ``build("fmanet", num_flow=5)``."""

from .fmanet import FMANet, FMANetConfig, NetD, NetR
from .registry import build, list_models, register_model

__all__ = ["build", "list_models", "register_model", "FMANet", "FMANetConfig", "NetD", "NetR"]
