"""The ``accel`` command line: demo, train, compile, sim, rtl, verify, synth, sweep, import, export.

Every command reads YAML, writes JSON (and PNG plots) beside its human summary, and exits with status 2
and one line naming the file, key or layer on bad input.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from spikecore import api
from spikecore.accel.contract.footprint import footprint_summary, memory_footprint
from spikecore.accel.flows.outputs import cache_root, claim_output_file, output_dir, report_header
from spikecore.accel.flows.simulation import (DATASETS, digits_test_images, plot_sim_report, sim_report,
                                               simulate_images, test_images)
from spikecore.errors import UserError

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 1
#: A bug, not the user's input: one line and where the full traceback was saved.
EXIT_INTERNAL_ERROR = 3
SIMULATORS = ("icarus", "verilator")


# ---- shared steps -------------------------------------------------------------------------------
def _load_program_or_compile(source, arch, stream_mode=None):
    """A program directory, or a checkpoint to compile; returns ``(program, net_or_None)``."""
    source = Path(source)
    if source.is_dir():
        return api.load_program(source, arch), None
    net = api.load_network(source, stream_mode=stream_mode)
    return api.compile(net, arch, source=source), net


def _write_json(path, data) -> None:
    from spikecore.atomic import atomic_write_json

    atomic_write_json(Path(path), data)


def _parse_flip(text: str, arch):
    from spikecore.accel.contract.layouts import all_layouts
    from spikecore.accel.contract.program import MEMORY_NAMES

    try:
        memory, word, bit = text.split(":")
        word, bit = int(word), int(bit)
    except ValueError:
        raise UserError(f"--flip-bit: expected MEMORY:WORD:BIT, got {text!r}") from None
    if memory not in MEMORY_NAMES:
        raise UserError(f"--flip-bit: unknown memory '{memory}' (one of {', '.join(MEMORY_NAMES)})")
    width = all_layouts(arch)[memory].width
    if not 0 <= bit < width:
        raise UserError(f"--flip-bit: bit {bit} is outside the {width}-bit words of memory '{memory}'")
    return memory, word, bit


# ---- commands -----------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from spikecore.accel.flows.trainconfig import load_train_config

    config = load_train_config(args.config)
    if args.resume and not config.get("generic"):
        raise UserError(f"{args.config or 'the built-in configuration'}: --resume needs a generic "
                        f"configuration (the digits network trains in one go)")
    with output_dir(args.out, "train"):
        metrics = _train(args, config)
    print(f"test accuracy {metrics['test_accuracy']:.4f} in {metrics['train_seconds']:.1f} s; "
          f"checkpoint {Path(args.out) / 'checkpoint.pt'}, metrics {Path(args.out) / 'metrics.json'}")
    return 0


def _train(args, config) -> dict:
    from spikecore.models.datasets import DatasetFormatError, DatasetNotFoundError
    from spikecore.models.train import RunDirError, TrainingDiverged, train_digits, train_network

    source = args.config or "the built-in configuration"
    try:
        if config.get("generic"):
            try:
                return train_network(args.out, config, progress=not args.quiet,
                                     resume=False if args.restart else (True if args.resume else None),
                                     log=lambda line: print(line, file=sys.stderr, flush=True))
            except (RunDirError, DatasetNotFoundError, DatasetFormatError) as exc:
                raise UserError(str(exc).splitlines()[0]) from None
        return train_digits(args.out, config["model"], progress=not args.quiet, **config["train"])
    except TrainingDiverged as exc:
        raise UserError(f"{source}: {exc}") from None


def cmd_compile(args) -> int:
    arch = api.load_arch(args.arch)
    net = api.load_network(args.checkpoint, stream_mode=args.stream_mode)
    program = api.compile(net, arch, source=args.checkpoint)
    program.save(args.out)
    sizes = {name: len(next(iter(cols.values()))) for name, cols in program.memories.items()}
    print(f"program written to {args.out}: {len(program.layers)} layers, T={program.timesteps}, words {sizes}")
    print(footprint_summary(memory_footprint(program, arch)))
    return 0


def cmd_sim(args) -> int:
    arch = api.load_arch(args.arch)
    out = Path(args.out)
    claim_output_file(out, "sim")
    claim_output_file(out.with_suffix(".png"), "sim", plot=True)
    program = api.load_program(args.program, arch)
    pixels, labels = test_images(args.dataset, args.samples, args.data_root, program)
    report = api.simulate(program, arch, pixels, labels, engine=args.engine, energy=args.energy,
                          progress=not args.quiet)
    report = {**report_header("sim", {"program": args.program, "arch": args.arch, "energy": args.energy}),
              **report}
    _write_json(out, report)
    plot_sim_report(report, out.with_suffix(".png"))
    print(f"{report['samples']} inferences: accuracy {report['accuracy']:.4f}, {report['cycles_mean']:.0f} cycles "
          f"({report['latency_us_mean']:.1f} us at {arch.clock_mhz:g} MHz), {report['energy_total_pj'] / 1e3:.1f} nJ "
          f"({report['pj_per_sop']:.2f} pJ/SOP); report {out}, plot {out.with_suffix('.png')}")
    return 0


def cmd_rtl(args) -> int:
    arch = api.load_arch(args.arch)
    from spikecore.rtl.verilog import generate

    from spikecore.accel.contract.layouts import all_layouts

    with output_dir(args.out, "rtl"):
        path = generate(arch, Path(args.out))
        summary = {"top": "core", "verilog": str(path), "arch": arch.to_dict(), "arch_fingerprint": arch.fingerprint(),
                   "word_widths": {name: layout.width for name, layout in all_layouts(arch).items()}}
        _write_json(Path(args.out) / "rtl.json", summary)
    print(f"Verilog written to {path}")
    return 0


def cmd_verify(args) -> int:
    arch = api.load_arch(args.arch)
    claim_output_file(args.out, "verify")
    if args.waves is not None:
        from spikecore.rtl.runner import prepare_waves_folder

        prepare_waves_folder(args.waves)  # before minutes of work
    if args.coverage is not None:
        from spikecore.rtl.coverage import check_destination

        check_destination(args.coverage)
    flips = [_parse_flip(f, arch) for f in args.flip_bit]
    program, net = _load_program_or_compile(args.source, arch, args.stream_mode)
    pixels, labels = test_images(args.dataset, args.samples, args.data_root, program)
    from spikecore.rtl.runner import CoreHang

    try:
        report = api.verify(program, arch, pixels, simulator=args.simulator, network=net, labels=labels,
                            waves=args.waves, flip_bits=flips, progress=not args.quiet, coverage=args.coverage)
    except CoreHang as exc:  # a failed verification (a --flip-bit fault can do it), not a bad input
        print(f"accel verify: bit_exact False: {exc}; no report written", file=sys.stderr)
        return 1
    report = {**report_header("verify", {"source": args.source, "arch": args.arch}), **report}
    _write_json(args.out, report)
    first = report["mismatches"][0] if report["mismatches"] else None
    print(f"bit_exact {report['bit_exact']}, cycle_exact {report['cycle_exact']} on {report['samples']} samples; "
          f"report {args.out}" + (f"; first mismatch {json.dumps(first)}" if first else ""))
    if report["first_difference"] is not None:
        from spikecore.accel.flows.verify import describe_difference

        print(describe_difference(report["first_difference"]))
    if args.waves is not None:
        print(f"waves: {len(report['waves'])} FST files in {args.waves} (docs/waves.md)")
    if args.coverage is not None:
        print(f"{report['coverage']['summary']}; report {report['coverage']['report']}, "
              f"{report['coverage']['markdown']} and {report['coverage']['plot']} (docs/coverage.md)")
    return 0 if report["bit_exact"] and report["cycle_exact"] else EXIT_MISMATCH


def cmd_demo(args) -> int:
    from spikecore.accel.flows import methods

    if args.list_methods:
        zoo = methods.zoo_manifest()
        for name, method in methods.METHODS.items():
            print(f"{name:15s} {_zoo_column(methods, name, zoo.get(name)):28s} {method.summary}")
        return 0
    if args.out is None:
        raise UserError("--out is required (the folder for the demo's results)")
    out = Path(args.out)
    method = None if args.method is None else methods.METHODS.get(args.method)
    if args.method is not None and method is None:
        raise UserError(f"--method {args.method!r} is not a method (see accel demo --list-methods)")
    # every method runs on the methods core (lane-parallel, 20-bit): the MLF family's untrained and K = 4
    # networks need wider accumulators than the default's 16 bits
    arch_path = args.arch if args.arch or method is None else methods.methods_arch_path()
    arch = api.load_arch(arch_path)
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    if args.epochs is not None and (args.epochs < 1 or method is None):
        raise UserError(f"--epochs must be at least 1 and goes with --method, got {args.epochs}")
    digits_test_images(args.samples)  # refuses more than the test set has, before anything runs
    if args.pretrained and args.epochs is not None:
        raise UserError("--epochs trains the method; --pretrained uses its shipped checkpoint (give one of them)")
    # the method's zoo checkpoint, its SHA-256 checked against the zoo's manifest before anything is written
    pretrained = methods.pretrained_checkpoint(args.method) if args.pretrained and method is not None else None
    with output_dir(out, "demo"):
        return _demo_chain(args, out, method, arch, arch_path, pretrained)


def _zoo_column(methods, name: str, entry) -> str:
    """``--list-methods``: whether the zoo holds the method's checkpoint, with its float and hardware-exact
    test accuracy."""
    if entry is None:
        return "not pretrained"
    try:
        methods.pretrained_checkpoint(name)
    except UserError:
        return "pretrained: file damaged"
    return (f"pretrained {100 * entry['float_accuracy']:.1f}% "
            f"(hw {100 * entry['hardware_exact_accuracy']:.1f}%)")


def _demo_chain(args, out: Path, method, arch, arch_path, pretrained: Path | None = None) -> int:
    """The demo's five steps into the claimed folder ``out`` (``pretrained``: the method's checked zoo
    checkpoint)."""
    from spikecore.models.train import train_digits

    from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
    from spikecore.accel.flows.trainconfig import load_train_config
    from spikecore.accel.flows.verify import float_gap, run_golden

    from spikecore.accel.flows import methods

    if pretrained is not None:
        checkpoint = pretrained
        print(f"[1/5] using the shipped {args.method} checkpoint {checkpoint}: {method.summary}")
    elif args.pretrained:
        checkpoint = shipped_checkpoint_path()
        print(f"[1/5] using the shipped checkpoint {checkpoint}")
    elif method is not None:
        print(f"[1/5] training the {args.method} network on the digits: {method.summary}")
        checkpoint = methods.train_method(args.method, out / "train", progress=not args.quiet, epochs=args.epochs)
    else:
        print("[1/5] training the digits network (MLF K=3, T=4)")
        config = load_train_config(None)
        train_digits(out / "train", config["model"], progress=not args.quiet, **config["train"])
        checkpoint = out / "train" / "checkpoint.pt"
    net, payload = load_checkpoint(checkpoint)
    if method is not None:
        methods.prepare(args.method, net)
    print("[2/5] compiling to a fixed-point Program")
    program = api.compile(net, arch, source=checkpoint)
    program.save(out / "program")
    print("[3/5] simulating the whole test set")
    pixels, labels = digits_test_images(None)
    sim_results = simulate_images(program, arch, pixels, not args.quiet)
    simulation = sim_report(program, arch, sim_results, labels, pixels)
    inputs = {"checkpoint": checkpoint, "arch": arch_path}
    _write_json(out / "sim_report.json", {**report_header("sim", {"program": out / "program", "arch": arch_path,
                                                                   "energy": None}), **simulation})
    plot_sim_report(simulation, out / "sim_report.png")
    golden = run_golden(program, arch, pixels)
    gap = float_gap(net, program, golden, pixels, labels)
    print("[4/5] generating Verilog")
    from spikecore.rtl.verilog import generate

    verilog = generate(arch, out / "rtl")
    print(f"[5/5] verifying {args.samples} test images on the RTL ({args.simulator})")
    from spikecore.accel.flows.verify import verify_on_rtl

    report = verify_on_rtl(program, arch, pixels[:args.samples], args.simulator, net, labels[:args.samples],
                           progress=not args.quiet)
    report = {**report_header("verify", inputs), **report}
    _write_json(out / "verify_report.json", report)
    summary = {
        **report_header("demo", inputs),
        "method": args.method or "default",
        "pretrained": bool(args.pretrained),
        "float_accuracy": gap["float_accuracy"],
        "hardware_exact_accuracy": gap["hardware_exact_accuracy"],
        "accuracy_gap_pp": gap["accuracy_gap_pp"],
        "simulator_accuracy": simulation["accuracy"],
        "test_images": len(pixels),
        "bit_exact": report["bit_exact"],
        "cycle_exact": report["cycle_exact"],
        "verified_samples": report["samples"],
        "cycles_per_inference_mean": simulation["cycles_mean"],
        "latency_us_mean": simulation["latency_us_mean"],
        "artifacts": {
            "checkpoint": str(checkpoint), "program": str(out / "program"), "sim_report": str(out / "sim_report.json"),
            "sim_plot": str(out / "sim_report.png"), "verilog": str(verilog),
            "verify_report": str(out / "verify_report.json"),
        },
    }
    _write_json(out / "summary.json", summary)
    print()
    print(f"float accuracy           {summary['float_accuracy']:.4f}  ({len(pixels)} test images)")
    print(f"hardware-exact accuracy  {summary['hardware_exact_accuracy']:.4f}  (gap {gap['accuracy_gap_pp']:+.2f} pp)")
    print(f"bit_exact                {summary['bit_exact']}  (golden == simulator == RTL on {report['samples']} images)")
    print(f"cycle_exact              {summary['cycle_exact']}  (simulator cycles == RTL cycles)")
    print(f"cycles per inference     {summary['cycles_per_inference_mean']:.0f}  "
          f"({summary['latency_us_mean']:.1f} us at {arch.clock_mhz:g} MHz)")
    for name, path in summary["artifacts"].items():
        print(f"  {name:14s} {path}")
    print(f"  {'summary':14s} {out / 'summary.json'}")
    return 0 if report["bit_exact"] and report["cycle_exact"] else EXIT_MISMATCH


INIT_KINDS = {"arch": "architecture configuration", "sweep": "sweep file", "train": "training configuration"}


def cmd_init(args) -> int:
    """``accel init arch|sweep|train --out FILE``: a commented starting configuration that validates."""
    from importlib import resources

    from spikecore.atomic import atomic_write_bytes

    template = (resources.files("spikecore.accel") / "data" / "templates" / f"{args.kind}.yaml").read_bytes()
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        if not out.is_file() or out.read_bytes() != template:
            raise UserError(f"--out {out}: exists; accel init writes only new files (choose another name)")
    from spikecore.atomic import check_writable

    check_writable(out)
    atomic_write_bytes(out, template)
    check = {"arch": f"accel rtl --arch {out} --out RTL_DIR", "sweep": f"accel sweep {out} --out SWEEP_DIR",
             "train": f"accel train {out} --out RUN_DIR"}[args.kind]
    print(f"wrote a starting {INIT_KINDS[args.kind]} to {out}; edit it, then: {check}")
    return 0


def cmd_schema(args) -> int:
    """``accel schema arch|sweep|train [--out FILE]``: the JSON Schema of a configuration file."""
    from spikecore.accel.flows.schemas import schema_text

    text = schema_text(args.name)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from spikecore.atomic import atomic_write_bytes

    from spikecore.accel.flows.schemas import is_schema_file

    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not is_schema_file(out):
        raise UserError(f"--out {out}: exists and is not a schema accel schema wrote; choose another name")
    atomic_write_bytes(out, text.encode())
    print(f"wrote the {args.name} schema to {out}")
    return 0


#: Each command's description and examples in its ``--help``.
COMMAND_HELP = {
    "demo": ("The main job on the embedded default: train the digits network, compile it, simulate the test "
             "set, generate Verilog and verify test images on the RTL (golden == simulator == RTL). With "
             "--method NAME the same chain runs one of the 15 methods of the seed papers on the methods core; "
             "--pretrained skips training and uses a shipped checkpoint: the digits network, or with --method "
             "the method's checkpoint from the model zoo (accel/data/methods/, every method; "
             "--list-methods shows their test accuracy).",
             ["accel demo --out out/demo", "accel demo --pretrained --out out/demo --simulator icarus",
              "accel demo --method sew-iand --epochs 2 --out out/sew-iand",
              "accel demo --method ms-resnet --pretrained --samples 5 --out out/ms-resnet",
              "accel demo --list-methods"]),
    "train": ("Train the digits network, or any network of the method set on any supported dataset "
              "(docs/training.md); a generic run resumes after an interruption.",
              ["accel train --out runs/digits", "accel init train --out train.yaml && accel train train.yaml "
               "--out runs/resnet8"]),
    "compile": ("Quantize a checkpoint to the core's fixed point and compile it into a Program folder "
                "(manifest.json, arrays.npz) for an architecture.",
                ["accel compile runs/digits/checkpoint.pt --out prog",
                 "accel compile runs/resnet8/checkpoint.pt --arch accel/data/methods_arch.yaml --out prog"]),
    "sim": ("Run a Program on the cycle-level simulator over a test set (the digits by default): accuracy, cycles, latency, "
            "lane utilization, memory traffic and energy per layer (JSON and a PNG beside it).",
            ["accel sim prog --out sim.json", "accel sim prog --samples 50 --engine tables --out sim.json"]),
    "rtl": ("Generate the core's Verilog (core.v, rtl.json) for an architecture configuration.",
            ["accel rtl --out rtl", "accel init arch --out arch.yaml && accel rtl --arch arch.yaml --out rtl"]),
    "verify": ("Prove golden == simulator == RTL, bit for bit and cycle for cycle, on test images; exit 1 on "
               "a mismatch, with the first mismatches in the report.",
               ["accel verify runs/digits/checkpoint.pt --out verify.json",
                "accel verify prog --samples 5 --flip-bit weights:10:3 --out fault.json",
                "accel verify prog --samples 2 --coverage cov --out verify.json"]),
    "synth": ("Synthesise the core with Yosys (and place and route it with nextpnr for iCE40 and ECP5): LUT, "
              "FF, block RAM, DSP, Fmax (docs/synthesis.md).",
              ["accel synth --target ice40-up5k --out synth", "accel synth --arch arch.yaml --target ecp5-85 "
               "--out synth-ecp5"]),
    "board": ("Build a bitstream of the core and its host bridge (UART at 115200 baud) for a board: the iCEBreaker "
              "(iCE40 UP5K) or the ULX3S-85F (ECP5), with the PLL to the configured clock, busy/done LEDs, the "
              "timing report and, with --program, the Program's image in the bridge's byte order (docs/board.md).",
              ["accel board --board icebreaker --program prog --out board", "accel board --board ulx3s-85f --arch "
               "examples/arch_ulx3s.yaml --out board-ulx3s"]),
    "run": ("Run inferences on a board built by accel board through its serial port: load the Program, send test "
            "images, read back logits, trace and counters, and compare each with the golden model and the "
            "simulator (the report of accel verify; exit 1 on a mismatch).",
            ["accel run --port /dev/ttyUSB1 prog --samples 20 --out board_verify.json"]),
    "sweep": ("Explore architectures over a grid and random points for trained networks: accuracy, cycles, "
              "energy, area; Pareto front as CSV and PNG; resumable (docs/sweeps.md).",
              ["accel init sweep --out sweep.yaml && accel sweep sweep.yaml --out sweep",
               "accel sweep examples/sweep_digits.yaml --out sweep --workers 2"]),
    "import": ("Bring a network from snnTorch, SpikingJelly, Norse, Sinabs, ... through NIR (docs/nir.md).",
               ["accel import snn.nir --out snn.pt --timesteps 4 --input-scale 16"]),
    "export": ("Export a compilable network to standard NIR nodes, with the quantization as metadata.",
               ["accel export runs/digits/checkpoint.pt --out digits.nir"]),
    "schema": ("Print (or write) the JSON Schema of a configuration file, for editors and CI: keys, types, "
               "ranges and choices, generated from the loaders' own tables (docs/bad-inputs.md has the rules only "
               "the loaders check).",
               ["accel schema arch > arch.schema.json", "accel schema sweep --out sweep.schema.json"]),
    "init": ("Write a commented starting configuration that validates: an architecture, a sweep or a "
             "training configuration.",
             ["accel init arch --out arch.yaml", "accel init sweep --out sweep.yaml",
              "accel init train --out train.yaml"]),
}


def _describe_commands(sub) -> None:
    """Give every command's ``--help`` its description and examples (:data:`COMMAND_HELP`)."""
    for name, parser in sub.choices.items():
        description, examples = COMMAND_HELP[name]
        parser.description = description
        parser.epilog = "examples:\n" + "\n".join(f"  {example}" for example in examples)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter


# ---- parser -------------------------------------------------------------------------------------
class OneLineParser(argparse.ArgumentParser):
    """Usage errors as one line naming the command, like every other bad input (exit status 2)."""

    def error(self, message):
        print(f"{self.prog}: error: {UserError(message)} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="accel", description="Train, compile, simulate, generate and verify "
                                     "spike-driven SNN accelerators.")
    from spikecore.accel.flows.outputs import toolkit_version

    parser.add_argument("--version", action="version", version=f"spikecore {toolkit_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    def dataset_args(p):
        p.add_argument("--dataset", default="digits", metavar="NAME|DIR",
                       help=f"test images: {', '.join(DATASETS)} (event data: on a core with event_input) or a "
                            f"folder of .npz samples with integer 'image' and 'label' (default: digits)")
        p.add_argument("--data-root", metavar="DIR", default=None, help="where the dataset's files are (cifar10, dvs-gesture, cifar10-dvs)")

    def arch_arg(p):
        p.add_argument("--arch", metavar="ARCH.yaml", default=None,
                       help="architecture configuration (default: the embedded digits configuration)")

    def stream_mode_arg(p):
        p.add_argument("--stream-mode", choices=("fsnn", "dsnn"), default=None,
                       help="dual-stream networks: compile the FSNN (AAP removed) or DSNN (AAP kept) inference")

    def quiet_arg(p):
        p.add_argument("--quiet", action="store_true", help="no progress bars")

    p = sub.add_parser("demo", help="the main job: train, compile, simulate, generate Verilog, verify")
    p.add_argument("--out", metavar="DIR", help="folder for every result (required unless --list-methods)")
    p.add_argument("--method", metavar="NAME", default=None,
                   help="run the chain for one method of the seed papers (see --list-methods)")
    p.add_argument("--list-methods", action="store_true",
                   help="print the method names, whether a pretrained checkpoint is shipped with its float and "
                   "hardware-exact (hw) test accuracy, and a summary; then exit")
    arch_arg(p)
    p.add_argument("--pretrained", action="store_true",
                   help="use a shipped checkpoint instead of training: the digits network, or with --method the "
                   "method's zoo checkpoint (its SHA-256 checked against accel/data/methods/manifest.json)")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="with --method (not --pretrained): train N epochs instead of the method's default "
                   "(a quick run)")
    p.add_argument("--samples", type=int, default=20, help="test images verified on the RTL (default 20)")
    p.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="RTL simulator (default verilator: ~30x faster than icarus once built)")
    quiet_arg(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("train", help="train a network (digits, or any network/dataset: docs/training.md) from YAML")
    p.add_argument("config", nargs="?", metavar="CONFIG.yaml", help="training configuration (default: built-in)")
    p.add_argument("--out", required=True, metavar="RUN_DIR")
    resume = p.add_mutually_exclusive_group()
    resume.add_argument("--resume", action="store_true",
                        help="continue the unfinished run in RUN_DIR (also automatic when one is found there)")
    resume.add_argument("--restart", action="store_true",
                        help="ignore a run already in RUN_DIR and start from epoch 1 (overwrites it)")
    quiet_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("compile", help="quantize and compile a checkpoint into a Program directory")
    p.add_argument("checkpoint", metavar="CHECKPOINT")
    arch_arg(p)
    p.add_argument("--out", required=True, metavar="PROGRAM_DIR")
    stream_mode_arg(p)
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("sim", help="run a Program on the cycle-level simulator over a test set")
    p.add_argument("program", metavar="PROGRAM_DIR")
    arch_arg(p)
    p.add_argument("--out", required=True, metavar="REPORT.json")
    p.add_argument("--samples", type=int, default=None, help="test images (default: all)")
    dataset_args(p)
    p.add_argument("--energy", metavar="ENERGY.yaml", default=None,
                   help="energy table: e_ac_pj, sram_pj_per_64bit {bytes: pJ} (default: Horowitz 45 nm)")
    p.add_argument("--engine", choices=("auto", "dense", "tables"), default="auto",
                   help="simulator engine (docs/core.md, 'Simulator engines'; equal results; default auto)")
    quiet_arg(p)
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("rtl", help="generate the core's Verilog for a configuration")
    arch_arg(p)
    p.add_argument("--out", required=True, metavar="RTL_DIR")
    p.set_defaults(func=cmd_rtl)

    p = sub.add_parser("verify", help="prove golden == simulator == RTL on test images")
    p.add_argument("source", metavar="CHECKPOINT_OR_PROGRAM")
    arch_arg(p)
    p.add_argument("--samples", type=int, default=20)
    dataset_args(p)
    p.add_argument("--out", required=True, metavar="REPORT.json")
    p.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="RTL simulator (default verilator: ~30x faster than icarus once built)")
    stream_mode_arg(p)
    p.add_argument("--flip-bit", action="append", default=[], metavar="MEMORY:WORD:BIT",
                   help="fault injection: flip one bit of a word loaded into the RTL (repeatable)")
    p.add_argument("--waves", metavar="DIR", help="write the RTL's waveforms, one FST file per sample "
                   "(DIR/sample-0000.fst ...; docs/waves.md)")
    p.add_argument("--coverage", metavar="FILE_OR_DIR", help="count the RTL's functional coverage and write its "
                   "report, with the holes, to DIR/coverage.json, .md and .png (or FILE.json, FILE.md and FILE.png; "
                   "docs/coverage.md)")
    quiet_arg(p)
    p.set_defaults(func=cmd_verify)

    from spikecore.accel.flows import sweep as sweep_command, synth as synth_command

    synth_command.add_parser(sub, arch_arg, quiet_arg)
    from spikecore.accel.flows import board as board_command

    board_command.add_parsers(sub, arch_arg, quiet_arg, dataset_args)
    sweep_command.add_parser(sub, quiet_arg, dataset_args)
    from spikecore.accel.flows import nir_io

    nir_io.add_parsers(sub, arch_arg, stream_mode_arg)

    p = sub.add_parser("init", help="write a commented starting configuration (arch, sweep or train)")
    p.add_argument("kind", choices=sorted(INIT_KINDS), help="which configuration")
    p.add_argument("--out", required=True, metavar="FILE", help="the YAML file to write (must not exist)")
    p.set_defaults(func=cmd_init)

    p = sub.add_parser("schema", help="the JSON Schema of a configuration file (arch, sweep or train)")
    p.add_argument("name", choices=sorted(INIT_KINDS), help="which configuration")
    p.add_argument("--out", metavar="FILE", default=None, help="write it to FILE (default: print it)")
    p.set_defaults(func=cmd_schema)
    _describe_commands(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM arrived: unwinds like Ctrl-C, so temporary files are removed and workers stopped."""


def _terminate(signum, frame):
    raise Terminated()


def _save_traceback(command: str) -> Path | None:
    """Write the current exception's traceback to a crash file; returns its path (None if nowhere writable)."""
    import os
    import tempfile
    import traceback

    text = traceback.format_exc()
    for folder in (cache_root() / "crashes", Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"accel-{command}-{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.txt"
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else None
    reason = exc.strerror or str(exc)
    return f"{where}: {reason}" if where is not None else reason


def main(argv=None) -> int:
    import signal

    parser = build_parser()
    args = parser.parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return args.func(args)
    except UserError as exc:
        print(f"accel {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:  # the reader went away (`accel demo --list-methods | head`): stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error when Python flushes
        return 141
    except OSError as exc:  # a file that cannot be read or written: the path and the reason
        print(f"accel {args.command}: error: {UserError(_os_error_line(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except MemoryError:
        print(f"accel {args.command}: error: not enough memory for this input", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"accel {args.command}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"accel {args.command}: terminated", file=sys.stderr)
        return 143
    except Exception as exc:  # a bug: one line, the traceback in a file
        saved = _save_traceback(args.command)
        where = f"; traceback saved to {saved}" if saved else ""
        print(f"accel {args.command}: internal error: {UserError(f'{type(exc).__name__}: {exc}')}{where} "
              f"(please report it)", file=sys.stderr)
        return EXIT_INTERNAL_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
