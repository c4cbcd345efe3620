"""Imports of peer libraries used as references by the benchmarks and the cross-check tests."""
import importlib.util
import sys
import types
from pathlib import Path

import torch

# SpikingJelly's side folder (scripts/install.sh, docs/install.md), outside the environment's sys.path so that
# `pip check` does not see its unmet requirements (torchaudio); appended, so an installation in the environment
# itself comes first (tests/conftest.py does the same for the tests)
PEERS = Path(sys.prefix) / "spikecore-peers"
if PEERS.is_dir() and str(PEERS) not in sys.path:
    sys.path.append(str(PEERS))


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
