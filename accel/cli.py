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

from .errors import UserError
from .outputs import claim_output_file, output_dir, report_header

EXIT_BAD_INPUT = 2
EXIT_MISMATCH = 1
#: A bug, not the user's input: one line and where the full traceback was saved.
EXIT_INTERNAL_ERROR = 3
SIMULATORS = ("icarus", "verilator")


# ---- shared steps -------------------------------------------------------------------------------
def rtl_cache_dir() -> Path:
    """Where generated and compiled cores are cached (``$SPIKECORE_CACHE``, else ``~/.cache/spikecore``)."""
    import os

    root = os.environ.get("SPIKECORE_CACHE") or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "spikecore"
    return Path(root) / "rtl"


def _arch(path):
    from .config import load_arch

    return load_arch(path)


def _test_images(samples: int | None):
    from models import load_digits_split

    _, _, x_te, y_te = load_digits_split()
    if samples is not None:
        if samples < 1:
            raise UserError(f"--samples must be at least 1, got {samples}")
        if samples > len(x_te):
            raise UserError(f"--samples {samples}: the digits test set has {len(x_te)} images")
        x_te, y_te = x_te[:samples], y_te[:samples]
    return x_te, y_te


def _set_stream_mode(net, mode, source):
    """Dual-stream networks compile in one inference mode (``--stream-mode``)."""
    if mode is None:
        return net
    if getattr(net, "block_kind", None) != "dual":
        raise UserError(f"{source}: --stream-mode is for dual-stream networks only")
    net.set_stream_mode(mode)
    return net


def _load_program_or_compile(source, arch, stream_mode=None):
    """A program directory, or a checkpoint to compile; returns ``(program, net_or_None)``."""
    from .checkpoint import load_checkpoint
    from .compiler import compile_network
    from .program import Program

    from .compiler import validate_program

    source = Path(source)
    if source.is_dir():
        program = Program.load(source)
        validate_program(program, arch, str(source))
        return program, None
    net, _ = load_checkpoint(source)
    _set_stream_mode(net, stream_mode, source)
    return compile_network(net, arch, meta={"checkpoint": str(source)}), net


def _simulate(program, arch, pixels, progress=True, keep_events=True, engine="auto"):
    from tqdm import tqdm

    from sim.engine import DenseEngineUnsuitable, simulate_batch

    flat = pixels.reshape(len(pixels), -1).numpy()
    if program.n_inputs != flat.shape[1] or (flat.size and int(flat.max()) > program.input_max):
        raise UserError(f"the program takes {program.n_inputs} inputs of at most {program.input_max}, the digits "
                        f"test images are {flat.shape[1]} pixels of up to {int(flat.max())}: compile it from a "
                        f"digits network")
    with tqdm(total=len(flat), desc="simulate", unit="img", disable=not progress) as bar:
        try:
            return simulate_batch(program, arch, flat, bar, keep_events=keep_events, engine=engine)
        except DenseEngineUnsuitable as exc:  # only with an explicit --engine dense
            raise UserError(f"--engine dense: {exc}; use --engine tables or auto") from None


def _sim_report(program, arch, results, labels, pixels, energy=None) -> dict:
    """Per-inference means of the cycle account, memory traffic and energy, plus accuracy (docs/core.md)."""
    import numpy as np

    from sim.cost import energy_of, layer_accesses, load_energy_model, setup_accesses
    from sim.engine import LayerAccount

    energy = energy or load_energy_model(None)
    totals = [LayerAccount(layer.name) for layer in program.layers]
    for r in results:
        for total, account in zip(totals, r.layers):
            total.add(account)
    n = len(results)
    cycles = np.array([r.cycles for r in results])
    predictions = np.array([int(np.argmax(r.logits)) for r in results])
    per_layer = []
    for layer, total in zip(program.layers, totals):
        entry = {k: v / n for k, v in total.__dict__.items() if k != "name"}
        neurons = layer.channels * layer.positions
        accesses = {name: (r / n, w / n) for name, (r, w) in layer_accesses(total, arch).items()}
        entry.update(name=layer.name, neurons=neurons,
                     firing_events_per_neuron_per_step=(total.output_events / n / program.timesteps / neurons
                                                        if layer.fires else None),
                     lane_utilization=(total.ac_ops / n / (arch.lanes * max(total.accumulate_cycles / n, 1))),
                     memory_reads={name: r for name, (r, _) in accesses.items()},
                     memory_writes={name: w for name, (_, w) in accesses.items()},
                     energy_ops_pj=total.ac_ops / n * energy.e_ac_pj,
                     energy_memory_pj=energy_of(accesses, arch, energy))
        per_layer.append(entry)
    input_events = float(np.count_nonzero(pixels.reshape(n, -1).numpy()) / n)
    setup = setup_accesses(program.state_rows, program.n_inputs, input_events, arch)
    setup_pj = energy_of(setup, arch, energy)
    ops_pj = sum(l["energy_ops_pj"] for l in per_layer)
    memory_pj = sum(l["energy_memory_pj"] for l in per_layer) + setup_pj
    sops = sum(l["ac_ops"] for l in per_layer)
    clock_hz = arch.clock_mhz * 1e6
    return {
        "samples": n,
        "arch": arch.name,
        "arch_fingerprint": arch.fingerprint(),
        "accuracy": float((predictions == labels.numpy()).mean()),
        "cycles_mean": float(cycles.mean()),
        "cycles_min": int(cycles.min()),
        "cycles_max": int(cycles.max()),
        "cycles": cycles.tolist(),
        "clock_mhz": arch.clock_mhz,
        "latency_us_mean": float(cycles.mean() / clock_hz * 1e6),
        "throughput_inferences_per_s": float(clock_hz / cycles.mean()),
        "setup_cycles": int(results[0].setup_cycles),
        "setup_memory_accesses": {name: {"reads": r, "writes": w} for name, (r, w) in setup.items()},
        "synaptic_ops_per_inference": sops,
        "energy_model": {"e_ac_pj": energy.e_ac_pj, "sram_pj_per_64bit": energy.sram_pj_per_64bit},
        "energy_ops_pj": ops_pj,
        "energy_memory_pj": memory_pj,
        "energy_total_pj": ops_pj + memory_pj,
        "pj_per_sop": (ops_pj + memory_pj) / sops if sops else None,
        "saturations": int(sum(r.saturations for r in results)),
        "trace_overflows": int(sum(r.trace_overflow for r in results)),
        "layers": per_layer,
    }


def _plot_sim(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.atomic import atomic_save_figure

    layers = report["layers"]
    names = [l["name"] for l in layers]
    fig, ((ax_c, ax_u), (ax_e, ax_f)) = plt.subplots(2, 2, figsize=(10, 7))
    acc = [l["accumulate_cycles"] for l in layers]
    upd = [l["update_cycles"] for l in layers]
    ax_c.bar(names, acc, label="accumulate")
    ax_c.bar(names, upd, bottom=acc, label="update")
    ax_c.set_ylabel("cycles per inference"), ax_c.set_title("cycles per layer"), ax_c.legend()
    ax_u.bar(names, [l["lane_utilization"] for l in layers], color="tab:purple")
    ax_u.set_ylim(0, 1), ax_u.set_ylabel("lane additions / lane-cycles"), ax_u.set_title("AC-lane utilization")
    ops = [l["energy_ops_pj"] / 1e3 for l in layers]
    mem = [l["energy_memory_pj"] / 1e3 for l in layers]
    ax_e.bar(names, ops, label="operations")
    ax_e.bar(names, mem, bottom=ops, label="memory")
    ax_e.set_ylabel("nJ per inference"), ax_e.legend()
    ax_e.set_title(f"energy ({report['pj_per_sop']:.2f} pJ/SOP overall)" if report["pj_per_sop"] else "energy")
    rates = [l["firing_events_per_neuron_per_step"] or 0.0 for l in layers]
    ax_f.bar(names, rates, color="tab:green")
    ax_f.set_ylabel("events / neuron / timestep"), ax_f.set_title("firing rate")
    fig.tight_layout()
    atomic_save_figure(fig, path)


def _write_json(path, data) -> None:
    from models.atomic import atomic_write_json

    atomic_write_json(Path(path), data)


def _run_rtl(program, arch, pixels, workdir: Path, simulator: str, flip_bits=(), waves=None, progress=None):
    from rtl.runner import run_inferences

    image = program.memory_image(arch)
    for memory, word, bit in flip_bits:
        if not 0 <= word < len(image[memory]):
            raise UserError(f"--flip-bit: word {word} is outside memory '{memory}' (0..{len(image[memory]) - 1})")
        image[memory][word] ^= 1 << bit
    inputs = [[int(v) for v in row] for row in pixels.reshape(len(pixels), -1).tolist()]
    return run_inferences(image, inputs, arch, workdir, simulator=simulator, waves=waves, progress=progress)


def _parse_flip(text: str, arch):
    from .layouts import all_layouts
    from .program import MEMORY_NAMES

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


def _verify(program, arch, net, pixels, labels, out: Path, simulator: str, flip_bits=(), progress=True,
            inputs=None, waves=None) -> dict:
    from tqdm import tqdm

    from .verify import check_trace_capacity, float_gap, verify

    sim_results = _simulate(program, arch, pixels, progress)
    check_trace_capacity(arch, sim_results)  # before the RTL runs for nothing
    start = time.perf_counter()
    # one step per completed inference (the build, when there is one, announces itself above the bar)
    with tqdm(total=len(pixels), desc=f"rtl ({simulator})", unit="img", disable=not progress) as bar:
        rtl_results = _run_rtl(program, arch, pixels, rtl_cache_dir(), simulator, flip_bits, waves,
                               bar if progress else None)
    rtl_seconds = time.perf_counter() - start
    report, golden = verify(program, arch, pixels, rtl_results, sim_results)
    report = {**report_header("verify", inputs or {}), **report}
    report.update(simulator=simulator, rtl_seconds=rtl_seconds, flipped_bits=[list(f) for f in flip_bits],
                  waves=None if waves is None else [result["waves_file"] for result in rtl_results])
    if net is not None:
        report["float_vs_integer"] = float_gap(net, program, golden, pixels, labels)
    _write_json(out, report)
    return report


# ---- commands -----------------------------------------------------------------------------------
def cmd_train(args) -> int:
    from .trainconfig import load_train_config

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
    from models.datasets import DatasetFormatError, DatasetNotFoundError
    from models.train import RunDirError, TrainingDiverged, train_digits, train_network

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
    from .checkpoint import load_checkpoint
    from .compiler import compile_network

    arch = _arch(args.arch)
    net, _ = load_checkpoint(args.checkpoint)
    _set_stream_mode(net, args.stream_mode, args.checkpoint)
    program = compile_network(net, arch, meta={"checkpoint": str(args.checkpoint)})
    program.save(args.out)
    sizes = {name: len(next(iter(cols.values()))) for name, cols in program.memories.items()}
    print(f"program written to {args.out}: {len(program.layers)} layers, T={program.timesteps}, words {sizes}")
    return 0


def cmd_sim(args) -> int:
    from .program import Program

    from .compiler import validate_program

    arch = _arch(args.arch)
    out = Path(args.out)
    claim_output_file(out, "sim")
    claim_output_file(out.with_suffix(".png"), "sim", plot=True)
    program = Program.load(args.program)
    validate_program(program, arch, str(args.program))
    pixels, labels = _test_images(args.samples)
    from sim.cost import load_energy_model

    energy = load_energy_model(args.energy)
    # the report needs the accounts, not the events: the simulator's performance mode
    results = _simulate(program, arch, pixels, not args.quiet, keep_events=False, engine=args.engine)
    report = _sim_report(program, arch, results, labels, pixels, energy)
    report = {**report_header("sim", {"program": args.program, "arch": args.arch, "energy": args.energy}),
              **report}
    _write_json(out, report)
    _plot_sim(report, out.with_suffix(".png"))
    print(f"{report['samples']} inferences: accuracy {report['accuracy']:.4f}, {report['cycles_mean']:.0f} cycles "
          f"({report['latency_us_mean']:.1f} us at {arch.clock_mhz:g} MHz), {report['energy_total_pj'] / 1e3:.1f} nJ "
          f"({report['pj_per_sop']:.2f} pJ/SOP); report {out}, plot {out.with_suffix('.png')}")
    return 0


def cmd_rtl(args) -> int:
    arch = _arch(args.arch)
    from rtl.verilog import generate

    from .layouts import all_layouts

    with output_dir(args.out, "rtl"):
        path = generate(arch, Path(args.out))
        summary = {"top": "core", "verilog": str(path), "arch": arch.to_dict(), "arch_fingerprint": arch.fingerprint(),
                   "word_widths": {name: layout.width for name, layout in all_layouts(arch).items()}}
        _write_json(Path(args.out) / "rtl.json", summary)
    print(f"Verilog written to {path}")
    return 0


def cmd_verify(args) -> int:
    arch = _arch(args.arch)
    claim_output_file(args.out, "verify")
    if args.waves is not None:
        from rtl.runner import prepare_waves_folder

        prepare_waves_folder(args.waves)  # before minutes of work
    flips = [_parse_flip(f, arch) for f in args.flip_bit]
    program, net = _load_program_or_compile(args.source, arch, args.stream_mode)
    pixels, labels = _test_images(args.samples)
    report = _verify(program, arch, net, pixels, labels, Path(args.out), args.simulator, flips, not args.quiet,
                     inputs={"source": args.source, "arch": args.arch}, waves=args.waves)
    first = report["mismatches"][0] if report["mismatches"] else None
    print(f"bit_exact {report['bit_exact']}, cycle_exact {report['cycle_exact']} on {report['samples']} samples; "
          f"report {args.out}" + (f"; first mismatch {json.dumps(first)}" if first else ""))
    if report["first_difference"] is not None:
        from .verify import describe_difference

        print(describe_difference(report["first_difference"]))
    if args.waves is not None:
        print(f"waves: {len(report['waves'])} FST files in {args.waves} (docs/waves.md)")
    return 0 if report["bit_exact"] and report["cycle_exact"] else EXIT_MISMATCH


def cmd_demo(args) -> int:
    from . import methods

    if args.list_methods:
        for name, method in methods.METHODS.items():
            print(f"{name:15s} {method.summary}")
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
    arch = _arch(arch_path)
    if args.samples < 1:
        raise UserError(f"--samples must be at least 1, got {args.samples}")
    if args.epochs is not None and (args.epochs < 1 or method is None):
        raise UserError(f"--epochs must be at least 1 and goes with --method, got {args.epochs}")
    _test_images(args.samples)  # refuses more than the test set has, before anything runs
    if args.pretrained and method is not None:
        raise UserError("--pretrained is the shipped digits network; a --method is trained (use --epochs "
                        "for a quick run)")
    with output_dir(out, "demo"):
        return _demo_chain(args, out, method, arch, arch_path)


def _demo_chain(args, out: Path, method, arch, arch_path) -> int:
    """The demo's five steps into the claimed folder ``out``."""
    from models.train import train_digits

    from .checkpoint import load_checkpoint, shipped_checkpoint_path
    from .compiler import compile_network
    from .trainconfig import load_train_config
    from .verify import float_gap, run_golden

    from . import methods

    if args.pretrained:
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
    program = compile_network(net, arch, meta={"checkpoint": str(checkpoint)})
    program.save(out / "program")
    print("[3/5] simulating the whole test set")
    pixels, labels = _test_images(None)
    sim_results = _simulate(program, arch, pixels, not args.quiet)
    sim_report = _sim_report(program, arch, sim_results, labels, pixels)
    inputs = {"checkpoint": checkpoint, "arch": arch_path}
    _write_json(out / "sim_report.json", {**report_header("sim", {"program": out / "program", "arch": arch_path,
                                                                   "energy": None}), **sim_report})
    _plot_sim(sim_report, out / "sim_report.png")
    golden = run_golden(program, arch, pixels)
    gap = float_gap(net, program, golden, pixels, labels)
    print("[4/5] generating Verilog")
    from rtl.verilog import generate

    verilog = generate(arch, out / "rtl")
    print(f"[5/5] verifying {args.samples} test images on the RTL ({args.simulator})")
    report = _verify(program, arch, net, pixels[:args.samples], labels[:args.samples], out / "verify_report.json",
                     args.simulator, progress=not args.quiet, inputs=inputs)
    summary = {
        **report_header("demo", inputs),
        "method": args.method or "default",
        "float_accuracy": gap["float_accuracy"],
        "hardware_exact_accuracy": gap["hardware_exact_accuracy"],
        "accuracy_gap_pp": gap["accuracy_gap_pp"],
        "simulator_accuracy": sim_report["accuracy"],
        "test_images": len(pixels),
        "bit_exact": report["bit_exact"],
        "cycle_exact": report["cycle_exact"],
        "verified_samples": report["samples"],
        "cycles_per_inference_mean": sim_report["cycles_mean"],
        "latency_us_mean": sim_report["latency_us_mean"],
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

    from models.atomic import atomic_write_bytes

    template = (resources.files("accel") / "data" / "templates" / f"{args.kind}.yaml").read_bytes()
    out = Path(args.out)
    if out.exists() or out.is_symlink():
        if not out.is_file() or out.read_bytes() != template:
            raise UserError(f"--out {out}: exists; accel init writes only new files (choose another name)")
    from .outputs import check_writable

    check_writable(out)
    atomic_write_bytes(out, template)
    check = {"arch": f"accel rtl --arch {out} --out RTL_DIR", "sweep": f"accel sweep {out} --out SWEEP_DIR",
             "train": f"accel train {out} --out RUN_DIR"}[args.kind]
    print(f"wrote a starting {INIT_KINDS[args.kind]} to {out}; edit it, then: {check}")
    return 0


def cmd_schema(args) -> int:
    """``accel schema arch|sweep|train [--out FILE]``: the JSON Schema of a configuration file."""
    from .schemas import schema_text

    text = schema_text(args.name)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    from models.atomic import atomic_write_bytes

    from .schemas import is_schema_file

    out = Path(args.out)
    if (out.exists() or out.is_symlink()) and not is_schema_file(out):
        raise UserError(f"--out {out}: exists and is not a schema accel schema wrote; choose another name")
    atomic_write_bytes(out, text.encode())
    print(f"wrote the {args.name} schema to {out}")
    return 0


#: Each command's description and examples in its ``--help``.
COMMAND_HELP = {
    "demo": ("The main job on the embedded default: train the digits network, compile it, simulate the test "
             "set, generate Verilog and verify test images on the RTL (golden == simulator == RTL).",
             ["accel demo --out out/demo", "accel demo --pretrained --out out/demo --simulator icarus",
              "accel demo --method sew-iand --epochs 2 --out out/sew-iand"]),
    "train": ("Train the digits network, or any network of the method set on any supported dataset "
              "(docs/training.md); a generic run resumes after an interruption.",
              ["accel train --out runs/digits", "accel init train --out train.yaml && accel train train.yaml "
               "--out runs/resnet8"]),
    "compile": ("Quantize a checkpoint to the core's fixed point and compile it into a Program folder "
                "(manifest.json, arrays.npz) for an architecture.",
                ["accel compile runs/digits/checkpoint.pt --out prog",
                 "accel compile runs/resnet8/checkpoint.pt --arch accel/data/methods_arch.yaml --out prog"]),
    "sim": ("Run a Program on the cycle-level simulator over the digits test set: accuracy, cycles, latency, "
            "lane utilization, memory traffic and energy per layer (JSON and a PNG beside it).",
            ["accel sim prog --out sim.json", "accel sim prog --samples 50 --engine tables --out sim.json"]),
    "rtl": ("Generate the core's Verilog (core.v, rtl.json) for an architecture configuration.",
            ["accel rtl --out rtl", "accel init arch --out arch.yaml && accel rtl --arch arch.yaml --out rtl"]),
    "verify": ("Prove golden == simulator == RTL, bit for bit and cycle for cycle, on test images; exit 1 on "
               "a mismatch, with the first mismatches in the report.",
               ["accel verify runs/digits/checkpoint.pt --out verify.json",
                "accel verify prog --samples 5 --flip-bit weights:10:3 --out fault.json"]),
    "synth": ("Synthesise the core with Yosys (and place and route it with nextpnr for iCE40 and ECP5): LUT, "
              "FF, block RAM, DSP, Fmax (docs/synthesis.md).",
              ["accel synth --target ice40-up5k --out synth", "accel synth --arch arch.yaml --target ecp5-85 "
               "--out synth-ecp5"]),
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
    from .outputs import toolkit_version

    parser.add_argument("--version", action="version", version=f"spikecore {toolkit_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

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
    p.add_argument("--list-methods", action="store_true", help="print the method names and exit")
    arch_arg(p)
    p.add_argument("--pretrained", action="store_true", help="use the shipped checkpoint instead of training")
    p.add_argument("--epochs", type=int, default=None, metavar="N",
                   help="with --method: train N epochs instead of the method's default (a quick run)")
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

    p = sub.add_parser("sim", help="run a Program on the cycle-level simulator over the digits test set")
    p.add_argument("program", metavar="PROGRAM_DIR")
    arch_arg(p)
    p.add_argument("--out", required=True, metavar="REPORT.json")
    p.add_argument("--samples", type=int, default=None, help="test images (default: all)")
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
    p.add_argument("--out", required=True, metavar="REPORT.json")
    p.add_argument("--simulator", choices=SIMULATORS, default="verilator",
                   help="RTL simulator (default verilator: ~30x faster than icarus once built)")
    stream_mode_arg(p)
    p.add_argument("--flip-bit", action="append", default=[], metavar="MEMORY:WORD:BIT",
                   help="fault injection: flip one bit of a word loaded into the RTL (repeatable)")
    p.add_argument("--waves", metavar="DIR", help="write the RTL's waveforms, one FST file per sample "
                   "(DIR/sample-0000.fst ...; docs/waves.md)")
    quiet_arg(p)
    p.set_defaults(func=cmd_verify)

    from . import sweep as sweep_command, synth as synth_command

    synth_command.add_parser(sub, arch_arg, quiet_arg)
    sweep_command.add_parser(sub, quiet_arg)
    from . import nir_io

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
    for folder in (rtl_cache_dir().parent / "crashes", Path(tempfile.gettempdir())):
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
