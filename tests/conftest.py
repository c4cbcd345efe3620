"""Shared fixtures: the shipped digits checkpoint compiled on the default architecture."""
import pytest

from accel.checkpoint import load_checkpoint, shipped_checkpoint_path
from accel.compiler import compile_network
from accel.config import default_arch
from models import load_digits_split


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
