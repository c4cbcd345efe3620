"""Shared fixtures: the shipped digits checkpoint compiled on the default architecture."""
import os
import sys
from pathlib import Path

import pytest

# SpikingJelly's side folder (scripts/install.sh, docs/install.md): its declared requirements cannot be met beside the
# pinned torch, so it lies outside the environment's sys.path, where `pip check` does not see it; the tests import it
# from there. Appended: an installation in the environment itself comes first.
_PEERS = Path(sys.prefix) / "spikecore-peers"
if _PEERS.is_dir() and str(_PEERS) not in sys.path:
    sys.path.append(str(_PEERS))

from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import default_arch
from spikecore.models import load_digits_split


@pytest.fixture(scope="session")
def arch():
    return default_arch()


@pytest.fixture(scope="session")
def digits_net():
    net, _ = load_checkpoint(shipped_checkpoint_path())
    return net


@pytest.fixture(scope="session")
def digits_program(digits_net, arch):
    return compile_network(digits_net, arch)


@pytest.fixture(scope="session")
def digits_test_set():
    _, _, x_te, y_te = load_digits_split()
    return x_te, y_te


@pytest.fixture(scope="session", autouse=True)
def rtl_cache(tmp_path_factory):
    """Cores built by the command line during the tests go to a temporary cache, not the user's."""
    path = tmp_path_factory.mktemp("spikecore-cache")
    previous = os.environ.get("SPIKECORE_CACHE")
    os.environ["SPIKECORE_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("SPIKECORE_CACHE", None)
    else:
        os.environ["SPIKECORE_CACHE"] = previous
