"""Imports of peer libraries used as references by the benchmarks and the cross-check tests."""
import importlib.util
import sys
import types

import torch


def import_sew_resnet():
    """SpikingJelly's ``sew_resnet`` module.

    It imports torchvision's ``load_state_dict_from_url`` at import time only (for pretrained weights,
    never used here); torchvision has no CPU build on our machines, so when it is absent that one name is
    provided from ``torch.hub``.
    """
    if "torchvision" not in sys.modules and importlib.util.find_spec("torchvision") is None:
        shim = types.ModuleType("torchvision._internally_replaced_utils")
        shim.load_state_dict_from_url = torch.hub.load_state_dict_from_url
        package = types.ModuleType("torchvision")
        package._internally_replaced_utils = shim
        sys.modules.setdefault("torchvision", package)
        sys.modules.setdefault("torchvision._internally_replaced_utils", shim)
    from spikingjelly.activation_based.model import sew_resnet
    return sew_resnet
