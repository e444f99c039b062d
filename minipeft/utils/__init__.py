"""PEFT's ``peft.utils``: the utility functions scripts import from it (see :mod:`minipeft.utils.other`)."""

from ..modules_to_save import ModulesToSaveWrapper
from .other import _get_submodules as _get_submodules
from .other import fsdp_auto_wrap_policy, prepare_model_for_kbit_training

__all__ = ["ModulesToSaveWrapper", "fsdp_auto_wrap_policy", "prepare_model_for_kbit_training"]
