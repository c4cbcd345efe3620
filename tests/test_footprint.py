"""The on-chip memory a Program needs (``spikecore.accel.contract.footprint``, ``docs/core.md``, "Memories")."""
from __future__ import annotations

import dataclasses

from spikecore.accel.contract.footprint import footprint_summary, memory_footprint
from spikecore.accel.contract.layouts import all_layouts, memory_depths
from spikecore.accel.flows.cli import main


def test_every_memory_is_reported_with_its_width_and_depth(digits_program, arch):
    rows = {r.name: r for r in memory_footprint(digits_program, arch)}
    assert set(rows) == set(memory_depths(arch))
    for name, row in rows.items():
        assert row.width == all_layouts(arch)[name].width and row.configured_words == memory_depths(arch)[name]
        assert row.bits == row.words * row.width and row.configured_bits == row.configured_words * row.width
    tables = {name: len(next(iter(columns.values()))) for name, columns in digits_program.memories.items()}
    assert rows["synapses"].words == tables["synapses"] and rows["weights"].words == tables["weights"]
    assert rows["state"].words == digits_program.state_rows * arch.update_steps
    assert rows["inputs"].words == digits_program.n_inputs == 64
    # the program's tables fit the configuration they were compiled for; the trace's worst case need not
    assert all(row.words <= row.configured_words for row in rows.values() if not row.worst_case)
    firing = sum(layer.n_groups * arch.lanes for layer in digits_program.layers if layer.fires)
    assert rows["trace"].words == firing * digits_program.timesteps and rows["trace"].worst_case


def test_layer_major_accumulators_hold_a_word_per_timestep_slot(digits_program, arch):
    layer_major = dataclasses.replace(arch, schedule="layer_major", max_timesteps=4)
    rows = {r.name: r for r in memory_footprint(digits_program, layer_major)}
    assert rows["acc"].words == digits_program.state_rows * 4


def test_accel_compile_prints_the_footprint(tmp_path, capsys, digits_program, arch):
    from spikecore.accel.contract.checkpoint import shipped_checkpoint_path

    assert main(["compile", str(shipped_checkpoint_path()), "--out", str(tmp_path / "prog")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == footprint_summary(memory_footprint(digits_program, arch))
    assert out[-1].startswith("on-chip memory: the program needs ") and "synapses " in out[-1]
