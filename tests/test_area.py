"""The analytic area model: features, the least-squares fit, its leave-one-out error, the shipped calibration."""
import dataclasses
import json

import pytest

from spikecore.accel.flows import area
from spikecore.accel.contract.config import default_arch
from spikecore.errors import UserError
from spikecore.accel.flows.synth import TARGETS


def _variants():
    arch = default_arch()
    out = []
    for lanes in (2, 4, 8, 16):
        for levels in (2, 4):
            for synapses, params in ((1024, 1), (8192, 64)):  # one params row is too small for block RAM
                out.append(dataclasses.replace(arch, lanes=lanes, max_levels=levels, memories=dataclasses.replace(
                    arch.memories, synapses=synapses, params=params)))
    return out


def test_block_ram_tiling_picks_the_cheapest_shape():
    shapes = TARGETS["ice40-up5k"].bram_shapes
    assert area.bram_blocks(256, 16, shapes) == 1
    assert area.bram_blocks(2048, 2, shapes) == 1
    assert area.bram_blocks(300, 16, shapes) == 2       # 2 deep of 256x16, or 1 x 2 of 512x8
    assert area.bram_blocks(320, 640, shapes) == 80     # 640 bits wide: 40 blocks side by side, 2 deep


def test_features_grow_with_the_hardware():
    arch = dataclasses.replace(default_arch(), update_lanes=0, banks=())
    small, large = (area.features(dataclasses.replace(arch, lanes=lanes), "ice40-up5k") for lanes in (4, 16))
    assert large["datapath_bits"] == 4 * small["datapath_bits"]
    assert large["bram_blocks"] > small["bram_blocks"]
    # a split update has a one-lane neuron unit: only the AC array grows with the lanes
    split = [area.features(dataclasses.replace(arch, lanes=lanes, update_lanes=1), "ice40-up5k") for lanes in (4, 16)]
    assert split[1]["datapath_bits"] - split[0]["datapath_bits"] == 12 * arch.acc_bits
    # max_pool: a comparator per lane, counted as the lane's adder
    comparators = area.features(dataclasses.replace(arch, max_pool=True), "ice40-up5k")
    assert comparators["datapath_bits"] - area.features(arch, "ice40-up5k")["datapath_bits"] == \
        arch.lanes * arch.acc_bits


def test_the_default_bank_is_counted_on_spram_not_block_ram():
    arch = default_arch()
    banked = area.features(arch, "ice40-up5k")
    # 14,728 words of 64 bits: 4 SPRAMs of 16K x 16, and no block RAM for its members
    assert banked["spram_blocks"] == 4
    alone = area.features(dataclasses.replace(arch, banks=()), "ice40-up5k")
    assert alone["spram_blocks"] == 0 and alone["bram_blocks"] > banked["bram_blocks"] + 100
    # ECP5 has no SPRAM: the bank is block RAM there
    assert area.features(arch, "ecp5-85")["spram_blocks"] == 0


def test_fit_recovers_a_linear_truth_and_reports_its_error():
    truth = {"lut": {"one": 300, "datapath_bits": 5.0, "host_mux_bits": 2.0, "logic_memory_bits": 0.5,
                     "bram_mux_bits": 0.25},
             "ff": {"one": 100, "datapath_bits": 2.0, "host_mux_bits": 0.0, "logic_memory_bits": 1.0,
                    "bram_mux_bits": 0.0},
             "bram": {"one": 2, "bram_blocks": 1.0}, "dsp": {"one": 0}}
    points = []
    for arch in _variants():
        x = area.features(arch, "ice40-up5k")
        points.append({"arch_fingerprint": arch.fingerprint(), "arch_config": arch.to_dict(),
                       "measured": {r: sum(c * x[f] for f, c in coefs.items()) for r, coefs in truth.items()}})
    model = area.fit(points, "ice40-up5k")
    for resource in ("lut", "ff", "bram"):
        assert model.error[resource] < 1e-6
        for feature, value in truth[resource].items():
            assert model.coefficients[resource][feature] == pytest.approx(value, rel=1e-6, abs=1e-6)
    arch = _variants()[5]
    x = area.features(arch, "ice40-up5k")
    assert model.predict(arch)["lut"] == pytest.approx(sum(c * x[f] for f, c in truth["lut"].items()), abs=1)
    assert "mean absolute relative error (leave-one-out) LUT 0.0%" in model.describe()


def test_a_memory_costing_exactly_its_block_rams_stays_in_logic():
    """Yosys's memory_libmap takes a block RAM mapping only when it is strictly cheaper than flip-flops (one
    per bit): the layers table at the tie is logic, one word deeper it is block RAM."""
    shapes = TARGETS["ice40-up5k"].bram_shapes
    base = default_arch()
    arch = dataclasses.replace(base, max_levels=3, memories=dataclasses.replace(base.memories, params=8))
    width = area.memory_shapes(arch)["layers"][1]                # 64 bits: 4 blocks of 256x16, cost 256
    blocks = area.bram_blocks(1, width, shapes)
    tie = area.BRAM_COST["ice40-up5k"] * blocks // width      # depth whose bits cost exactly its block RAMs
    assert tie * width == area.BRAM_COST["ice40-up5k"] * blocks and area.bram_blocks(tie + 1, width, shapes) == blocks
    at_tie, deeper = (area.features(dataclasses.replace(arch, memories=dataclasses.replace(arch.memories, layers=d)),
                                    "ice40-up5k") for d in (tie, tie + 1))
    assert at_tie["logic_memory_bits"] - deeper["logic_memory_bits"] == tie * width
    assert deeper["bram_blocks"] - at_tie["bram_blocks"] == blocks


def test_fit_needs_enough_points():
    with pytest.raises(UserError, match=f"at least {area.MIN_POINTS} are needed"):
        area.fit([], "ice40-up5k")


def test_shipped_calibration_matches_its_synthesis_reports():
    """The shipped ice40-up5k model was fitted to real reports: refitting its points gives its coefficients
    and errors, and its error is the mean over those points."""
    shipped = area.shipped_points("ice40-up5k")
    assert len(shipped) >= 8
    model = area.fit(shipped, "ice40-up5k")
    stored = area.AreaModel(**json.loads(area.shipped_model_path().read_text())["ice40-up5k"])
    for resource in ("lut", "ff", "bram"):
        assert model.error[resource] == pytest.approx(stored.error[resource], rel=1e-6)
        for feature, value in stored.coefficients[resource].items():
            assert model.coefficients[resource][feature] == pytest.approx(value, rel=1e-6, abs=1e-9)
        assert 0 <= model.error[resource] < 0.5
