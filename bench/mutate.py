#!/usr/bin/env python3
"""Mutation testing of the RTL: regenerate the report of ``docs/mutation.md``.

    python3 bench/mutate.py --config default --mutants 200 --out reports/mutation-default
    python3 bench/mutate.py --config layer-major --mutants 200 --out reports/mutation-layer-major

Each configuration's core is mutated by Yosys's ``mutate`` (``spikecore.rtl.mutation``) and every mutant runs the
fixed set of programs of :func:`fixed_programs` under Verilator, compared by the checks of ``accel verify``
(``spikecore.accel.flows.mutate``); survivors go to an equivalence proof. The programs come from the contract
suite (``tests/contract/programs.py``), hence a script here rather than an ``accel`` command: the construct
programs are built by the suite's random generators, which are test code.

Configurations (:data:`CONFIGURATIONS`):

- ``default``: the embedded default core (one single-port bank, one neuron per update step, timestep-major);
  programs, in the order they run: a gate program (:func:`gate_layers`: no random construct program with a gate
  fits its 3 event regions), a program whose accumulators saturate (:func:`saturating_layers`), a lone readout
  (:func:`readout_layers`: one state row) and the same with its ``clear_acc`` bit cleared by hand, 16 passes
  (:func:`deep_layers`), a sum stage through bit 4 of its values and below 0 (:func:`sums_layers`), the gate
  program on an 8x8 image, a K = 4 stage whose membranes meet their thresholds nearly (:func:`levels_layers`,
  16 timesteps), a program whose trace overflows (:func:`overflowing_layers`), a stage whose events have 45
  synapse rows (:func:`firing_layers`), two construct programs of the suite's generator that fit its 3 event
  regions (seeds 14 and 59: carry and sum stages, with the suite's saturating integrator stage:
  ``programs.construct_layers``), the random ``DigitsNet`` ``digitsnet-s12``, the digits network, and a stage
  of 1024 events that fills its event region (:func:`firing_layers`), 2 images each;
- ``layer-major``: the contract suite's construct architecture in the layer-major schedule (4 lanes, every lane
  per update step, no bank); programs: the suite's ``constructs-s5``, ``-s6``, ``-s9`` (every construct kind),
  a stage whose membranes saturate at every level of every lane (:func:`integrator_layers`), the sum and gate
  clamps (:func:`clamping_layers`), 18 passes (:func:`deep_layers`), a full event region
  (:func:`firing_layers`) and the digits network compiled for it, 2 images each.

Bad input (an unknown configuration, a count below 1, an ``--out`` that is not this script's) is one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))            # run as a script from anywhere
sys.path.insert(0, str(ROOT / "tests"))  # the contract suite's programs

import numpy as np  # noqa: E402

EXIT_BAD_INPUT = 2
CONFIGURATIONS = ("default", "layer-major")
#: Images of each program.
IMAGES = 2
#: Construct programs of the suite's generator that fit the default core's 3 event regions.
DEFAULT_CONSTRUCT_SEEDS = (14, 59)


def gate_layers(lanes: int, size: int | None = None):
    """A small stage list with a gate on the default core (no random construct program with a gate fits its 3
    event regions): a binary neuron stage (K = 1) of the pixels, a gate over it whose input index mixes three of
    its channels (weights 1, 2, 4: every index 0..7 occurs; truth table 0b1011_0110), a readout; of a ``size`` x
    ``size`` image (default the construct programs' size): with 8, the gate's 64 lane groups set bit 6 of its
    descriptor's group count."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    from contract.programs import CONSTRUCT_SIZE

    rng = np.random.default_rng(3)
    size = CONSTRUCT_SIZE if size is None else size
    shape = (1, size, size)
    channels = lanes
    out_shape = (channels,) + shape[1:]
    weight = rng.integers(-8, 13, (channels, 1, 3, 3)).astype(np.int64)
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="conv", weight=weight, in_shape=shape, padding=1)], out_shape=out_shape,
        bias=rng.integers(-6, 7, channels).astype(np.int64),
        thresholds=rng.integers(20, 60, (1, channels)).astype(np.int64), scale=np.ones(channels), shift=1)
    mix = np.zeros((channels, channels, 1, 1), np.int64)
    for c in range(channels):
        for k in range(3):
            mix[c, (c + k) % channels] = 1 << k
    gate = ProgramLayer(name="gate", kind="gate", sources=[ProgramSource(input=0, op="conv", weight=mix,
                                                                          in_shape=out_shape)],
                        out_shape=out_shape, bias=np.zeros(channels, np.int64),
                        thresholds=np.full((1, channels), (1 << 15) - 1, np.int64), scale=np.ones(channels),
                        truth_table=0b10110110)
    readout = rng.integers(-12, 13, (3, int(np.prod(out_shape)))).astype(np.int64)
    return [stem, gate, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=1, op="linear", weight=readout, in_shape=out_shape)], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def saturating_layers(lanes: int, inputs: int):
    """A stage whose accumulators saturate (the construct programs saturate membranes only): ``2 * lanes``
    neurons, each the sum of every pixel times +127 or -128, so that a bright image passes the 16-bit
    accumulator's range both ways on every lane (the sign alternates by lane and by group); then a readout. Run
    for one timestep: at the next the membranes saturate too, which would hide a wrong clamped accumulator."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    channels = 2 * lanes
    signs = np.array([1 if (c + c // lanes) % 2 == 0 else -1 for c in range(channels)])
    weight = np.where(signs[:, None] > 0, 127, -128) * np.ones((channels, inputs), np.int64)
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="linear", weight=weight.astype(np.int64), in_shape=(inputs,))], out_shape=(channels,),
        bias=np.zeros(channels, np.int64), thresholds=np.full((1, channels), 20000, np.int64),
        scale=np.ones(channels), shift=1)
    readout = np.random.default_rng(4).integers(-12, 13, (3, channels)).astype(np.int64)
    return [stem, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=(channels,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def overflowing_layers(lanes: int):
    """A stage that fires nearly everywhere at every timestep (8x8 input, ``lanes`` channels, K = 1, a low
    threshold and a positive bias): 512 events a timestep, which overflow the default core's 2816-word trace
    memory by the sixth of its 8 timesteps; then a readout."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    rng = np.random.default_rng(5)
    shape, out_shape = (1, 8, 8), (lanes, 8, 8)
    weight = rng.integers(0, 5, (lanes, 1, 3, 3)).astype(np.int64)
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="conv", weight=weight, in_shape=shape, padding=1)], out_shape=out_shape,
        bias=np.full(lanes, 6, np.int64), thresholds=np.full((1, lanes), 4, np.int64), scale=np.ones(lanes))
    readout = rng.integers(-3, 4, (3, lanes * 64)).astype(np.int64)
    return [stem, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=out_shape)], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def readout_layers(inputs: int):
    """A lone readout of the pixels (3 outputs): the smallest program, one state row. Two images in a row show
    that CLEAR ran for that one row (a core that skipped it would start the second image from the first's
    membranes)."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    weight = np.random.default_rng(6).integers(-12, 13, (3, inputs)).astype(np.int64)
    return [ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=-1, op="linear", weight=weight, in_shape=(inputs,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def levels_layers(lanes: int, inputs: int):
    """A neuron stage of ``4 * lanes`` channels with K = 4 levels, each channel the current of one pixel, so
    that its membranes climb by 0 to 15 a timestep through thresholds (near 9, 18, 30 and 41) that they meet
    exactly or nearly: each level's comparison is decided by the low bits of its membrane; then a readout. Run
    for 16 timesteps, it emits events at timesteps 8 to 15 (bit 3 of the timestep counter)."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    rng = np.random.default_rng(7)
    channels = 4 * lanes
    weight = np.zeros((channels, inputs), np.int64)
    weight[np.arange(channels), (np.arange(channels) * 3) % inputs] = 1
    levels = np.array([[9], [18], [30], [41]]) + rng.integers(0, 4, (4, channels))
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="linear", weight=weight, in_shape=(inputs,))], out_shape=(channels,),
        bias=np.zeros(channels, np.int64), thresholds=levels.astype(np.int64), scale=np.ones(channels))
    readout = rng.integers(-12, 13, (3, channels)).astype(np.int64)
    return [stem, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=(channels,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def integrator_layers(arch, inputs: int):
    """A neuron stage of ``2 * lanes`` channels with ``max_levels`` levels that never fires and whose biases of
    the membrane range's end, of either sign, saturate every level of every membrane from the second timestep on
    (a saturated membrane plus the bias passes twice the range: every bit of the clamp's test is used; each
    saturation counted: compared with the golden model's count); a readout of it."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    rng = np.random.default_rng(9)
    channels, top = 2 * arch.lanes, (1 << (arch.membrane_bits - 1)) - 1
    signs = np.array([1 if (c + c // arch.lanes) % 2 == 0 else -1 for c in range(channels)])
    integrator = ProgramLayer(name="integrator", kind="neuron", sources=[ProgramSource(
        input=-1, op="linear", weight=rng.integers(-3, 4, (channels, inputs)).astype(np.int64), in_shape=(inputs,))],
        out_shape=(channels,), bias=(signs * top).astype(np.int64),
        thresholds=np.full((arch.max_levels, channels), top, np.int64), scale=np.ones(channels))
    readout = rng.integers(-12, 13, (3, channels)).astype(np.int64)
    return [integrator, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=(channels,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def clamping_layers(arch, inputs: int):
    """The clamps of the sum and gate stages (past the compiler's range check: it refuses sums beyond the event
    range): a sum stage of 8 channels, each a multiple of one pixel plus a bias, whose values spread from below
    0 to above the event range; a gate reading one sum channel each, less a bias, whose index spreads from below
    0 to above 7 and through 0 .. 7 (truth table 0b0100_1101: bit 4 clear, where the default configuration's
    gate program has it set); a readout of the gate."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    channels, top = 8, (1 << (arch.membrane_bits - 1)) - 1
    weight = np.zeros((channels, inputs), np.int64)
    weight[np.arange(channels), (np.arange(channels) * 7) % inputs] = [1, 2, 3, 20, 25, 1, 2, 30]
    total = ProgramLayer(name="sum", kind="sum", sources=[ProgramSource(
        input=-1, op="linear", weight=weight, in_shape=(inputs,))], out_shape=(channels,),
        bias=np.array([-3, 0, -10, -40, 10, 5, -20, -100], np.int64),
        thresholds=np.full((1, channels), top, np.int64), scale=np.ones(channels))
    gate = ProgramLayer(name="gate", kind="gate", sources=[ProgramSource(
        input=0, op="linear", weight=np.eye(channels, dtype=np.int64), in_shape=(channels,))],
        out_shape=(channels,), bias=-np.array([0, 2, 4, 98, 12, 16, 20, 30], np.int64),
        thresholds=np.full((1, channels), top, np.int64), scale=np.ones(channels), truth_table=0b01001101)
    readout = np.random.default_rng(11).integers(-12, 13, (3, channels)).astype(np.int64)
    return [total, gate, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=1, op="linear", weight=readout, in_shape=(channels,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def sums_layers(inputs: int):
    """A sum stage within the compiler's range (values at most 31, the default core's event range), of 8
    channels, each a multiple of one pixel plus a bias: values from below 0 (each clamp counted: compared with
    the golden model's count) through 16 .. 31 (bit 4 of the value), one channel the constant 16; a readout."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    channels = 8
    weight = np.zeros((channels, inputs), np.int64)
    weight[np.arange(channels), (np.arange(channels) * 7) % inputs] = [0, 2, 1, 2, -1, 1, 2, -1]
    total = ProgramLayer(name="sum", kind="sum", sources=[ProgramSource(
        input=-1, op="linear", weight=weight, in_shape=(inputs,))], out_shape=(channels,),
        bias=np.array([16, -10, -8, 1, 0, 16, -15, 1], np.int64),
        thresholds=np.full((1, channels), (1 << 15) - 1, np.int64), scale=np.ones(channels))
    readout = np.random.default_rng(12).integers(-12, 13, (3, channels)).astype(np.int64)
    return [total, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=(channels,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def deep_layers(lanes: int, inputs: int, depth: int):
    """A chain of ``depth`` neuron stages of ``lanes`` neurons each (a pass each), then a readout: ``depth + 1``
    passes (16, every descriptor of the default core's layers memory, or 18 in the layer-major configuration:
    bit 4 of the pass count and of the pass counter)."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    rng = np.random.default_rng(10)
    layers, width = [], inputs
    for k in range(depth):
        layers.append(ProgramLayer(name=f"stage{k}", kind="neuron", sources=[ProgramSource(
            input=k - 1, op="linear", weight=rng.integers(0, 4, (lanes, width)).astype(np.int64), in_shape=(width,))],
            out_shape=(lanes,), bias=np.ones(lanes, np.int64), thresholds=np.full((1, lanes), 6, np.int64),
            scale=np.ones(lanes)))
        width = lanes
    readout = rng.integers(-12, 13, (3, lanes)).astype(np.int64)
    return layers + [ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=depth - 1, op="linear", weight=readout, in_shape=(lanes,))], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def firing_layers(channels: int, size: int, bias_step: int = 0):
    """A 3x3 convolution of a ``size`` x ``size`` image into ``channels`` channels (weights 1, one weight row
    shared by every synapse row, threshold 0, bias ``1 - bias_step * channel``), then a readout of them all.
    With ``bias_step = 0`` every neuron fires at the first timestep: 16 channels of an 8x8 image give 1024
    events, which fill an event region to its last word. With 40 channels of the default core's 8 lanes an
    inner pixel's event has 45 synapse rows, and the biases, distinct per channel block, tell the fifth block's
    parameters from the first's."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    shape, out_shape = (1, size, size), (channels, size, size)
    stem = ProgramLayer(name="stem", kind="neuron", sources=[ProgramSource(
        input=-1, op="conv", weight=np.ones((channels, 1, 3, 3), np.int64), in_shape=shape, padding=1)],
        out_shape=out_shape, bias=1 - bias_step * np.arange(channels, dtype=np.int64),
        thresholds=np.zeros((1, channels), np.int64),
        scale=np.ones(channels))
    readout = np.random.default_rng(8).integers(-3, 4, (3, channels * size * size)).astype(np.int64)
    return [stem, ProgramLayer(name="readout", kind="readout", sources=[ProgramSource(
        input=0, op="linear", weight=readout, in_shape=out_shape)], out_shape=(3,), bias=np.zeros(3, np.int64),
        thresholds=np.full((1, 3), (1 << 15) - 1, np.int64), scale=np.ones(3))]


def fixed_programs(config: str) -> tuple:
    """``(arch, [MutationProgram])`` of a configuration (module docstring), cheapest program first."""
    from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
    from spikecore.accel.contract.compiler import (HARDWARE_PASSES, Compilation, compile_network, compile_stages,
                                                   run_passes)
    from spikecore.accel.contract.config import default_arch
    from spikecore.accel.flows.mutate import MutationProgram
    from spikecore.models import load_digits_split

    from contract import programs as suite
    from contract.generators import PIXEL_MAX

    shape = (1, suite.CONSTRUCT_SIZE, suite.CONSTRUCT_SIZE)

    def digits(arch):
        net = load_checkpoint(shipped_checkpoint_path())[0]
        pixels = load_digits_split()[2][:IMAGES].reshape(IMAGES, -1).numpy().astype(np.int64)
        return MutationProgram("digits", compile_network(net, arch), pixels)

    if config == "default":
        arch = default_arch()
        entries = []
        program = compile_stages(gate_layers(arch.lanes), arch, suite.CONSTRUCT_T, shape, PIXEL_MAX)
        entries.append(MutationProgram("gate", program, suite.random_images(3, IMAGES, program.n_inputs,
                                                                            PIXEL_MAX)))
        # past the compiler's range check on purpose: the core's saturation is part of its contract
        # (docs/numerics.md), and no program the compiler accepts makes an accumulator saturate
        compilation = Compilation(None, arch, (25,), float(PIXEL_MAX), PIXEL_MAX, {},
                                  layers=saturating_layers(arch.lanes, 25), timesteps=1)
        program = run_passes(compilation, [step for step in HARDWARE_PASSES if step.name != "check_ranges"])
        bright = np.vstack([np.full((1, 25), PIXEL_MAX, np.int64),
                            suite.random_images(4, IMAGES - 1, 25, PIXEL_MAX) // 2 + PIXEL_MAX // 2])
        entries.append(MutationProgram("saturating", program, bright, reference="simulator"))
        shape25 = (1, 5, 5)
        program = compile_stages(readout_layers(25), arch, 2, shape25, PIXEL_MAX)
        entries.append(MutationProgram("one-row", program, suite.random_images(6, IMAGES, 25, PIXEL_MAX)))
        # the same with its descriptor's clear_acc bit cleared by hand: its accumulator row keeps its sums past
        # the run, and only CLEAR zeroes it for the next image (compared with the simulator, which follows the
        # descriptors; the golden model knows no descriptors)
        layers = dict(program.memories["layers"], clear_acc=np.zeros_like(program.memories["layers"]["clear_acc"]))
        entries.append(MutationProgram("uncleared", dataclasses.replace(
            program, memories=dict(program.memories, layers=layers)), suite.random_images(6, IMAGES, 25, PIXEL_MAX),
            reference="simulator"))
        program = compile_stages(deep_layers(arch.lanes, 25, arch.memories.layers - 1), arch, 4, shape25, PIXEL_MAX)
        entries.append(MutationProgram("deep", program, suite.random_images(13, IMAGES, 25, PIXEL_MAX)))
        program = compile_stages(sums_layers(25), arch, 2, shape25, PIXEL_MAX)
        entries.append(MutationProgram("sums", program, suite.random_images(14, IMAGES, 25, PIXEL_MAX)))
        program = compile_stages(gate_layers(arch.lanes, 8), arch, 2, (1, 8, 8), PIXEL_MAX)
        entries.append(MutationProgram("gate-8x8", program, suite.random_images(15, IMAGES, 64, PIXEL_MAX)))
        program = compile_stages(levels_layers(arch.lanes, 25), arch, arch.max_timesteps, shape25, PIXEL_MAX)
        entries.append(MutationProgram("levels", program, suite.random_images(9, IMAGES, 25, PIXEL_MAX)))
        program = compile_stages(overflowing_layers(arch.lanes), arch, 8, (1, 8, 8), PIXEL_MAX)
        entries.append(MutationProgram("overflowing", program, suite.random_images(5, IMAGES, 64, PIXEL_MAX),
                                       reference="simulator"))
        program = compile_stages(firing_layers(5 * arch.lanes, 4, bias_step=2), arch, 1, (1, 4, 4), PIXEL_MAX)
        entries.append(MutationProgram("wide", program, suite.random_images(10, IMAGES, 16, PIXEL_MAX)))
        for seed in DEFAULT_CONSTRUCT_SEEDS:
            layers, _ = suite.construct_layers(seed, arch.membrane_bits)
            program = compile_stages(layers, arch, suite.CONSTRUCT_T, shape, PIXEL_MAX)
            entries.append(MutationProgram(f"constructs-s{seed}", program,
                                           suite.random_images(seed, IMAGES, program.n_inputs, PIXEL_MAX)))
        program, _, pixels, _ = suite.build("digitsnet-s12@default")
        entries.append(MutationProgram("digitsnet-s12", program, pixels[:IMAGES]))
        entries.append(digits(arch))
        program = compile_stages(firing_layers(2 * arch.lanes, 8), arch, 1, (1, 8, 8), PIXEL_MAX)
        entries.append(MutationProgram("full-region", program, suite.random_images(11, IMAGES, 64, PIXEL_MAX)))
        return arch, entries
    if config == "layer-major":
        arch = suite.construct_arch("layer-major")
        entries = []
        for seed in suite.CONSTRUCT_SEEDS:
            program, _, pixels, _ = suite.build(f"constructs-s{seed}@layer-major")
            entries.append(MutationProgram(f"constructs-s{seed}", program, pixels[:IMAGES]))
        shape25 = (1, 5, 5)
        program = compile_stages(integrator_layers(arch, 25), arch, arch.max_timesteps, shape25, PIXEL_MAX)
        entries.append(MutationProgram("integrator", program, suite.random_images(9, IMAGES, 25, PIXEL_MAX)))
        # past the compiler's range check: it refuses sums beyond the event range, whose clamp is the core's
        compilation = Compilation(None, arch, shape25, float(PIXEL_MAX), PIXEL_MAX, {},
                                  layers=clamping_layers(arch, 25), timesteps=arch.max_timesteps)
        program = run_passes(compilation, [step for step in HARDWARE_PASSES if step.name != "check_ranges"])
        eights = np.vstack([np.full((1, 25), 8, np.int64), suite.random_images(12, IMAGES - 1, 25, PIXEL_MAX)])
        entries.append(MutationProgram("clamping", program, eights, reference="simulator"))
        program = compile_stages(deep_layers(arch.lanes, 25, 17), arch, arch.max_timesteps, shape25, PIXEL_MAX)
        entries.append(MutationProgram("deep", program, suite.random_images(13, IMAGES, 25, PIXEL_MAX)))
        program = compile_stages(firing_layers(16, 8), arch, 1, (1, 8, 8), PIXEL_MAX)
        entries.append(MutationProgram("full-region", program, suite.random_images(11, IMAGES, 64, PIXEL_MAX)))
        return arch, entries + [digits(arch)]
    raise KeyError(config)


def main(argv=None) -> int:
    from spikecore.accel.flows.mutate import check_arguments, mutation_run, report_markdown, write_report
    from spikecore.accel.flows.outputs import check_output_dir
    from spikecore.errors import UserError

    parser = argparse.ArgumentParser(prog="bench/mutate.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help=f"one of {', '.join(CONFIGURATIONS)}")
    parser.add_argument("--mutants", type=int, default=200, help="mutants to make (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="mutate's seed (default 1)")
    parser.add_argument("--jobs", type=int, default=2, help="mutants simulated side by side (default 2)")
    parser.add_argument("--out", required=True, help="folder for the report (new, empty or an earlier report)")
    args = parser.parse_args(argv)
    try:
        if args.config not in CONFIGURATIONS:
            raise UserError(f"--config {args.config!r}: choose one of {', '.join(CONFIGURATIONS)}")
        if args.jobs < 1:
            raise UserError(f"--jobs must be at least 1, got {args.jobs}")
        check_arguments(args.mutants, args.seed)
        check_output_dir(args.out, "mutate")
        arch, programs = fixed_programs(args.config)
        report = mutation_run(arch, programs, args.mutants, args.seed, jobs=args.jobs)
        report["config"] = args.config
        paths = write_report(report, args.out)
    except UserError as exc:
        print(f"bench/mutate.py: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(report_markdown(report).splitlines()[2])
    print("report: " + ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
