"""Fully connected networks (issue 19, item 1): `arch: mlp` from `accel train` and NIR graphs with a flat input,
through compile, simulate and verify on the RTL."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest
import torch

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import load_arch
from spikecore.accel.flows.cli import main
from spikecore.accel.flows.methods import methods_arch_path
from spikecore.accel.flows.nir_io import import_graph, read_nir, write_nir
from spikecore.accel.flows.verify import verify
from spikecore.models import load_digits_split
from spikecore.models.networks import SpikingMLP, build_network
from spikecore.sim.engine import simulate_batch

from bad_input import assert_table_lists

METHODS_ARCH = str(methods_arch_path())  # 20-bit accumulators: 64 pixels of up to 16 reach one neuron


@pytest.mark.parametrize("config, shape, x", [
    ({"arch": "mlp", "hidden": [32, 16]}, (1, 8, 8), torch.rand(5, 1, 8, 8)),
    ({"arch": "mlp", "in_features": 20, "classes": 3}, (20,), torch.rand(5, 20)),
    ({"arch": "mlp", "in_features": 64, "hidden": [8]}, (64,), torch.rand(5, 1, 8, 8)),   # images, flattened
    ({"arch": "mlp", "in_features": 64, "hidden": [8]}, (64,), torch.rand(4, 5, 64)),     # time-major
])
def test_mlp_shapes(config, shape, x):
    net = build_network(config)
    assert isinstance(net, SpikingMLP) and net.feature_shape == shape
    assert net(x).shape == (5, config.get("classes", 10))


def test_bad_mlp_inputs_are_listed_in_the_table():
    assert_table_lists(["mlp-hidden-not-a-list", "mlp-flat-with-image-keys", "mlp-in-features-mismatch",
                        "mlp-wrong-input"])


@pytest.mark.parametrize("config, message", [
    ({"arch": "mlp", "hidden": 32}, "hidden: expected a list of positive ints"),
    ({"arch": "mlp", "hidden": [0]}, "hidden: expected a list of positive ints"),
    ({"arch": "mlp", "in_features": 64, "image_size": 8}, "in_features: a flat input has no in_channels"),
    ({"arch": "mlp", "norm": "bn"}, "norm: not a key of arch 'mlp'"),
])
def test_mlp_bad_configs_name_the_key(config, message):
    with pytest.raises(ValueError, match=message):
        build_network(config)
    with pytest.raises(ValueError, match="input: expected"):
        build_network({"arch": "mlp", "in_features": 10})(torch.rand(5, 11))


def test_in_features_must_match_the_dataset(tmp_path, capsys):
    config = tmp_path / "mlp.yaml"
    config.write_text("dataset: digits\nmodel: {arch: mlp, in_features: 60}\ntrain: {epochs: 1}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("key 'model.in_features' = 60: the dataset's samples have 1 x 8 x 8 = 64 values")
    assert not (tmp_path / "run").exists()


def test_trained_flat_mlp_verifies_on_the_rtl(tmp_path):
    """Done-when of issue 19: a fully connected network trained by `accel train` verifies bit and cycle exact."""
    config = tmp_path / "mlp.yaml"
    config.write_text("dataset: digits\nmodel: {arch: mlp, hidden: [24], in_features: 64, levels: 1}\n"
                      "train: {epochs: 1, optimizer: adam, lr: 0.005, batch_size: 64}\n")
    assert main(["train", str(config), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    assert main(["compile", str(tmp_path / "run" / "checkpoint.pt"), "--arch", METHODS_ARCH,
                 "--out", str(tmp_path / "prog")]) == 0
    manifest = json.loads((tmp_path / "prog" / "manifest.json").read_text())
    assert manifest["input_shape"] == [64]
    assert main(["verify", str(tmp_path / "prog"), "--arch", METHODS_ARCH, "--samples", "2", "--simulator",
                 "icarus", "--out", str(tmp_path / "verify.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True


def eighths(shape, generator):
    """Weights that are multiples of 1/8 in [-1/2, 1/2]: exact in the quantizer, so the test is about the core."""
    return (torch.randint(-4, 5, shape, generator=generator).double() / 8).numpy()


def lif(n):
    tau = 2e-4
    return nir.LIF(tau=np.full(n, tau), r=np.full(n, tau / 1e-4), v_leak=np.zeros(n), v_threshold=np.ones(n),
                   v_reset=np.zeros(n))


def flat_graph(generator):
    """snnTorch's first tutorial network, two layers deep, with a flat input vector (no Flatten node)."""
    nodes = {"input": nir.Input(input_type={"input": np.array([64])}),
             "fc1": nir.Affine(weight=eighths((32, 64), generator), bias=np.zeros(32)), "lif1": lif(32),
             "fc2": nir.Affine(weight=eighths((10, 32), generator), bias=np.zeros(10)), "lif2": lif(10),
             "output": nir.Output(output_type={"output": np.array([10])})}
    names = list(nodes)
    return nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])))


def test_flat_nir_input_is_golden_equal_to_the_simulator(tmp_path):
    write_nir(flat_graph(torch.Generator().manual_seed(3)), tmp_path / "flat.nir")
    net = import_graph(read_nir(tmp_path / "flat.nir"), "flat.nir", 1e-4, 4, 16.0)
    arch = load_arch(METHODS_ARCH)
    program = compile_network(net, arch)
    assert program.input_shape == (64,) and program.n_inputs == 64
    _, _, pixels, _ = load_digits_split()
    pixels = pixels[:60]
    sims = simulate_batch(program, arch, pixels.reshape(len(pixels), -1).numpy())
    report, golden = verify(program, arch, pixels, None, sims)
    assert report["bit_exact"], report["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 0  # the comparison is not vacuous


def test_flat_nir_network_verifies_on_the_rtl(tmp_path):
    """Done-when of issue 19: a fully connected network imported from NIR with a flat input verifies."""
    write_nir(flat_graph(torch.Generator().manual_seed(5)), tmp_path / "flat.nir")
    assert main(["import", str(tmp_path / "flat.nir"), "--out", str(tmp_path / "flat.pt"), "--timesteps", "4",
                 "--input-scale", "16", "--arch", METHODS_ARCH]) == 0
    assert main(["verify", str(tmp_path / "flat.pt"), "--arch", METHODS_ARCH, "--samples", "2", "--simulator",
                 "icarus", "--out", str(tmp_path / "verify.json"), "--quiet"]) == 0
    report = json.loads((tmp_path / "verify.json").read_text())
    assert report["bit_exact"] is True and report["cycle_exact"] is True
