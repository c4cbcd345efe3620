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
  programs: the digits network (2 test images), the random ``DigitsNet`` ``digitsnet-s12`` (2 images), two
  construct programs of the suite's generator that fit its 3 event regions (seeds 14 and 59: carry and sum
  stages, with the suite's saturating integrator stage: ``programs.construct_layers``) and a gate program
  (:func:`gate_layers`: no random construct program with a gate fits 3 event regions), 2 images each;
- ``layer-major``: the contract suite's construct architecture in the layer-major schedule (4 lanes, every lane
  per update step, no bank); programs: the suite's ``constructs-s5``, ``-s6``, ``-s9`` (every construct kind) and
  the digits network compiled for it, 2 images each.

Bad input (an unknown configuration, a count below 1, an ``--out`` that is not this script's) is one line on
stderr and exit status 2.
"""
from __future__ import annotations

import argparse
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


def gate_layers(lanes: int):
    """A small stage list with a gate on the default core (no random construct program with a gate fits its 3
    event regions): a binary neuron stage (K = 1) of the pixels, a gate over it whose input index mixes three of
    its channels (weights 1, 2, 4: every index 0..7 occurs; truth table 0b1011_0110), a readout."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    from contract.programs import CONSTRUCT_SIZE

    rng = np.random.default_rng(3)
    shape = (1, CONSTRUCT_SIZE, CONSTRUCT_SIZE)
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
        program = compile_stages(overflowing_layers(arch.lanes), arch, 8, (1, 8, 8), PIXEL_MAX)
        entries.append(MutationProgram("overflowing", program, suite.random_images(5, IMAGES, 64, PIXEL_MAX),
                                       reference="simulator"))
        for seed in DEFAULT_CONSTRUCT_SEEDS:
            layers, _ = suite.construct_layers(seed, arch.membrane_bits)
            program = compile_stages(layers, arch, suite.CONSTRUCT_T, shape, PIXEL_MAX)
            entries.append(MutationProgram(f"constructs-s{seed}", program,
                                           suite.random_images(seed, IMAGES, program.n_inputs, PIXEL_MAX)))
        program, _, pixels, _ = suite.build("digitsnet-s12@default")
        entries.append(MutationProgram("digitsnet-s12", program, pixels[:IMAGES]))
        return arch, entries + [digits(arch)]
    if config == "layer-major":
        arch = suite.construct_arch("layer-major")
        entries = []
        for seed in suite.CONSTRUCT_SEEDS:
            program, _, pixels, _ = suite.build(f"constructs-s{seed}@layer-major")
            entries.append(MutationProgram(f"constructs-s{seed}", program, pixels[:IMAGES]))
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
