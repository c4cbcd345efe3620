"""Memory traffic and energy accounting (sim/cost.py) and the sim report built on it."""
import json
import math

import pytest

from spikecore.errors import UserError
from spikecore.accel.flows.cli import main
from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.contract.config import ArchConfig
from spikecore.sim.cost import EnergyModel, energy_of, layer_accesses, load_energy_model, setup_accesses
from spikecore.sim.engine import LayerAccount


def test_sram_energy_interpolates_log_log_and_scales_with_width():
    model = EnergyModel()
    assert model.access_pj(1024, 64) == pytest.approx(10.0)          # 8 KB, one 64-bit access
    assert model.access_pj(4096, 64) == pytest.approx(20.0)          # 32 KB
    assert model.access_pj(2048, 64) == pytest.approx(math.sqrt(200))  # 16 KB: geometric midpoint
    # 4 KB lies below the first point: the first segment's slope (ln 2 / ln 4 = 0.5) extrapolates
    # E64 = 10 * 0.5**0.5, and a 32-bit word costs half of that
    assert model.access_pj(1024, 32) == pytest.approx(10 * 0.5 ** 0.5 / 2)
    assert model.access_pj(1 << 20, 64) > 100.0                      # 8 MB: extrapolated above 1 MB


def test_accesses_follow_the_schedule():
    account = LayerAccount("l", input_events=7, synapse_rows=30, acc_updates=30, output_events=5, neuron_updates=4,
                           state_writes=4, acc_clears=3, steps=2)
    arch = ArchConfig(lanes=8)
    acc = layer_accesses(account, arch)
    assert acc["events"] == (7, 5) and acc["pointers"] == (7, 0)
    assert acc["synapses"] == acc["weights"] == (30, 0)
    assert acc["acc"] == (34, 33) and acc["state"] == (4, 4) and acc["params"] == (4, 0)
    assert acc["trace"] == (0, 5) and acc["layers"] == (2, 0)
    assert setup_accesses(10, 64, 20, arch) == {"inputs": (64, 0), "events": (0, 20), "acc": (0, 10),
                                                "state": (0, 10)}
    # a split update (2 neurons per step: 4 steps per group) reads and writes a group's state and params
    # as 4 narrower words; the accumulator row is still read once
    split = ArchConfig(lanes=8, update_lanes=2)
    acc = layer_accesses(account, split)
    assert acc["acc"] == (34, 33) and acc["state"] == (16, 16) and acc["params"] == (16, 0)
    assert setup_accesses(10, 64, 20, split)["state"] == (0, 40)
    # layer-major (T up to 4): 30 synapse rows fetched once, added into 45 timestep words; every timestep
    # slot of a row is cleared at set-up
    layer_major = ArchConfig(lanes=8, update_lanes=2, max_timesteps=4, schedule="layer_major")
    account.acc_updates = 45
    acc = layer_accesses(account, layer_major)
    assert acc["synapses"] == acc["weights"] == (30, 0)
    assert acc["acc"] == (45 + 4, 45 + 3) and acc["state"] == (16, 16)
    assert setup_accesses(10, 64, 20, layer_major)["acc"] == (0, 40)


def test_banked_memory_costs_its_bank_size_per_bit():
    model = EnergyModel()
    alone = ArchConfig(lanes=8)
    banked = ArchConfig(lanes=8, banks=(("pointers", "synapses", "weights"),))
    one_read = {"pointers": (1, 0)}
    # the pointer words cost as much per bit as the whole bank they sit in: more than alone
    assert energy_of(one_read, banked, model) > energy_of(one_read, alone, model)


def test_energy_table_is_validated(tmp_path):
    bad = tmp_path / "e.yaml"
    bad.write_text("e_ac: 1.0\n")
    with pytest.raises(UserError, match="unknown key 'e_ac' \\(did you mean 'e_ac_pj'\\?\\)"):
        load_energy_model(bad)
    bad.write_text("sram_pj_per_64bit: {1024: -3}\n")
    with pytest.raises(UserError, match="sram_pj_per_64bit"):
        load_energy_model(bad)


def test_sim_report_energy_adds_up_and_follows_the_table(tmp_path):
    program = tmp_path / "prog"
    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(program)]) == 0
    assert main(["sim", str(program), "--out", str(tmp_path / "a.json"), "--samples", "10", "--quiet"]) == 0
    doubled = tmp_path / "double.yaml"
    doubled.write_text("e_ac_pj: 1.8\nsram_pj_per_64bit: {8192: 20, 32768: 40, 1048576: 200}\n")
    assert main(["sim", str(program), "--out", str(tmp_path / "b.json"), "--samples", "10", "--quiet",
                 "--energy", str(doubled)]) == 0
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    assert a["energy_total_pj"] == pytest.approx(a["energy_ops_pj"] + a["energy_memory_pj"])
    assert a["pj_per_sop"] == pytest.approx(a["energy_total_pj"] / a["synaptic_ops_per_inference"])
    assert b["energy_total_pj"] == pytest.approx(2 * a["energy_total_pj"])
    conv1 = a["layers"][1]
    assert conv1["memory_reads"]["weights"] == conv1["synapse_rows"]
    assert conv1["memory_writes"]["trace"] == conv1["output_events"]
    assert 0 < a["layers"][0]["lane_utilization"] <= 1
