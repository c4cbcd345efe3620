"""Hostile numbers and structures (docs/bad-inputs.md): checkpoints, NIR files, energy tables and Programs whose
numbers are NaN, infinite, complex, of the wrong type or size, or point outside their tables are refused where
they enter, with exit status 2, one line naming the file and the key, and nothing written. A trace memory too
small for the network is reported as such, never as wrong spikes. A seeded mutation fuzz of the Program format
checks that `accel sim` either runs or refuses in one line, whatever the manifest and the arrays hold."""
import copy
import json
import random
import shutil
import signal
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bad_input import assert_one_error_line, assert_table_lists, edited_checkpoint, write
from spikecore.errors import UserError
from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.contract.layouts import state_layout
from spikecore.accel.flows.verify import verify
from spikecore.models import load_digits_split
from spikecore.sim.engine import simulate_batch

SHIPPED = shipped_checkpoint_path()


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> Path:
    """The shipped checkpoint compiled once for the module; cases edit copies of it."""
    path = tmp_path_factory.mktemp("compiled") / "prog"
    assert main(["compile", str(SHIPPED), "--out", str(path)]) == 0
    return path


# ---- checkpoints ----------------------------------------------------------------------------------------------
def _parameter(key, value):
    return lambda payload: payload["state_dict"].__setitem__(key, value)


def _config(key, value):
    return lambda payload: payload["config"].__setitem__(key, value)


def _compile(edit):
    return lambda t: ["compile", edited_checkpoint(t, edit), "--out", t / "out"]


# ---- NIR --------------------------------------------------------------------------------------------------------
def _nir(tmp: Path, affine=None, lif=None, input_shape=(1, 8, 8)) -> Path:
    """input - flatten - affine - LIF - output, with ``affine`` and ``lif`` overriding the nodes' parameters."""
    import nir

    n = 10
    lif_params = {"tau": np.full(n, 2e-4), "r": np.full(n, 2.0), "v_leak": np.zeros(n), "v_threshold": np.ones(n),
                  "v_reset": np.zeros(n), **(lif or {})}
    affine_params = {"weight": np.ones((n, 64)), "bias": np.zeros(n), **(affine or {})}
    nodes = {"input": nir.Input(input_type={"input": np.array(input_shape)}),
             "flat": nir.Flatten(input_type={"input": np.array(input_shape)}, start_dim=0, end_dim=-1),
             "fc": nir.Affine(**affine_params), "lif": nir.LIF(**lif_params),
             "output": nir.Output(output_type={"output": np.array([n])})}
    names = list(nodes)
    nir.write(tmp / "m.nir", nir.NIRGraph(nodes=nodes, edges=list(zip(names, names[1:])), type_check=False))
    return tmp / "m.nir"


def _import(**faults):
    return lambda t: ["import", _nir(t, **faults), "--out", t / "out", "--timesteps", "4", "--input-scale", "16"]


# ---- energy tables and Programs -----------------------------------------------------------------------------
def _energy(text: str):
    return lambda t, prog: ["sim", prog, "--samples", "2", "--energy", write(t / "e.yaml", text), "--out",
                            t / "out.json", "--quiet"]


def _copy(prog: Path, tmp: Path) -> Path:
    return Path(shutil.copytree(prog, tmp / "prog"))


def _arrays(path: Path) -> dict:
    with np.load(path / "arrays.npz") as data:
        return {k: data[k] for k in data.files}


def _sim(path: Path, tmp: Path) -> list:
    return ["sim", path, "--samples", "2", "--out", tmp / "out.json", "--quiet"]


def _edit_array(key: str, edit):
    """``accel sim`` of a copy whose array ``key`` is replaced by ``edit(array)``."""
    def argv(t, prog):
        path = _copy(prog, t)
        arrays = _arrays(path)
        arrays[key] = edit(arrays[key].copy())
        np.savez(path / "arrays.npz", **arrays)
        return _sim(path, t)
    return argv


def _set(index, value):
    def edit(array):
        array[index] = value
        return array
    return edit


def _edit_manifest(edit):
    """``accel sim`` of a copy whose manifest is edited by ``edit(manifest)`` (which may return its JSON text)."""
    def argv(t, prog):
        path = _copy(prog, t)
        manifest = json.loads((path / "manifest.json").read_text())
        text = edit(manifest)
        (path / "manifest.json").write_text(text if isinstance(text, str) else json.dumps(manifest))
        return _sim(path, t)
    return argv


def _set_key(*path_and_value):
    *path, value = path_and_value

    def edit(manifest):
        record = manifest
        for key in path[:-1]:
            record = record[key]
        record[path[-1]] = value
    return edit


def _deep_meta(manifest):
    manifest["meta"] = "DEEP"
    return json.dumps(manifest).replace('"DEEP"', "[" * 100_000 + "]" * 100_000)


def _array_bomb(t, prog):
    """An arrays.npz whose 'layer0.bias' header claims 10^12 integers (8 TB) and holds 8 bytes."""
    path = _copy(prog, t)
    arrays = _arrays(path)
    del arrays["layer0.bias"]
    np.savez(path / "arrays.npz", **arrays)
    with zipfile.ZipFile(path / "arrays.npz", "a") as archive, archive.open("layer0.bias.npy", "w") as handle:
        np.lib.format.write_array_header_1_0(handle, {"descr": "<i8", "fortran_order": False, "shape": (10 ** 12,)})
        handle.write(bytes(8))
    return _sim(path, t)


def _fewer_descriptors(t, prog):
    path = _copy(prog, t)
    arrays = _arrays(path)
    for key in [k for k in arrays if k.startswith("mem.layers.")]:
        arrays[key] = arrays[key][:2]
    np.savez(path / "arrays.npz", **arrays)
    return _sim(path, t)


# (row id, argv builder(tmp) or (tmp, compiled program), needles in the message)
CASES = [
    ("checkpoint-complex-nan",
     _compile(_parameter("fc.bias", torch.full((10,), complex(float("nan"), 0.0)))),
     ["edited.pt: parameter 'fc.bias' contains NaN or Inf"]),
    ("checkpoint-inf",
     _compile(_parameter("bn1.weight", torch.full((32,), float("inf")))),
     ["edited.pt: parameter 'bn1.weight' contains NaN or Inf"]),
    ("checkpoint-complex-tensor",
     _compile(_parameter("fc.bias", torch.zeros(10, dtype=torch.complex64))),
     ["edited.pt: parameter 'fc.bias' is a complex tensor (torch.complex64), expected a floating-point tensor"]),
    ("checkpoint-integer-tensor",
     _compile(_parameter("conv0.weight", torch.ones(16, 1, 3, 3, dtype=torch.int64))),
     ["edited.pt: parameter 'conv0.weight' is an integer tensor (torch.int64), expected a floating-point tensor"]),
    ("checkpoint-negative-variance",
     _compile(_parameter("bn0.running_var", torch.full((16,), -1.0))),
     ["edited.pt: parameter 'bn0.running_var' has a negative value -1 (a variance is never negative)"]),
    ("checkpoint-config-nan",
     _compile(_config("decay", float("nan"))),
     ["edited.pt: key 'config.decay' = nan is not a finite number"]),
    ("checkpoint-config-nested-inf",
     _compile(_config("channels", [16, float("inf")])),
     ["edited.pt: key 'config.channels[1]' = inf is not a finite number"]),
    ("checkpoint-config-zero-timesteps",
     _compile(_config("timesteps", 0)),
     ["edited.pt: key 'config.timesteps' must be an integer in [1, 1024], got 0"]),
    ("checkpoint-config-text-number",
     _compile(_config("v_th", "high")),
     ["edited.pt: key 'config.v_th' must be a number, got 'high'"]),
    ("checkpoint-config-huge",
     _compile(_config("channels", [10 ** 12, 32])),
     ["edited.pt: key 'config.channels[0]' = 1000000000000 is out of range"]),
    ("checkpoint-config-huge-network",
     _compile(_config("channels", [1 << 20, 1 << 20])),
     ["edited.pt: parameter 'conv0.weight' has shape [16, 1, 3, 3], expected [1048576, 1, 3, 3]"]),
    ("checkpoint-config-tensor",
     _compile(_config("v_th", torch.tensor(float("nan")))),
     ["edited.pt: key 'config.v_th' must be a number, text, list or mapping, got Tensor"]),
    ("nir-nan-weight",
     _import(affine={"weight": np.full((10, 64), np.nan)}),
     ["m.nir: node 'fc' (Affine): weight contains NaN or Inf"]),
    ("nir-inf-threshold",
     _import(lif={"v_threshold": np.full(10, np.inf)}),
     ["m.nir: node 'lif' (LIF): v_threshold contains NaN or Inf"]),
    ("nir-complex-weight",
     _import(affine={"weight": np.ones((10, 64)) * (1 + 1j)}),
     ["m.nir: node 'fc' (Affine): weight holds complex numbers"]),
    ("nir-zero-tau",
     _import(lif={"tau": np.zeros(10)}),
     ["m.nir: node 'lif' (LIF): tau = 0: a time constant is positive"]),
    ("nir-negative-tau",
     _import(lif={"tau": np.full(10, -2e-4)}),
     ["m.nir: node 'lif' (LIF): tau = -0.0002: a time constant is positive"]),
    ("nir-wrong-shape",
     _import(affine={"bias": np.zeros(3)}),
     ["m.nir: node 'fc' (Affine): bias has 3 values for 10 neurons"]),
    ("nir-huge-input",
     _import(input_shape=(1, 10 ** 6, 10 ** 6)),
     ["m.nir: node 'input' (Input): input shape [1, 1000000, 1000000]: expected positive sizes"]),
    ("energy-nan",
     _energy("e_ac_pj: .nan\n"),
     ["e.yaml: key 'e_ac_pj' must be a number of pJ in [0, 1e+06], got nan"]),
    ("energy-inf",
     _energy("sram_pj_per_64bit: {8192: .inf}\n"),
     ["e.yaml: key 'sram_pj_per_64bit.8192' must be a number of pJ", "got inf"]),
    ("energy-negative",
     _energy("e_ac_pj: -0.5\n"),
     ["e.yaml: key 'e_ac_pj' must be a number of pJ in [0, 1e+06], got -0.5"]),
    ("energy-not-a-number",
     _energy("e_ac_pj: cheap\n"),
     ["e.yaml: key 'e_ac_pj' must be a number of pJ", "got 'cheap'"]),
    ("energy-bad-size",
     _energy("sram_pj_per_64bit: {-8: 10.0}\n"),
     ["e.yaml: key 'sram_pj_per_64bit.-8': a size must be a whole number of bytes"]),
    ("program-pointer-past-end",
     _edit_array("mem.pointers.start", _set(12, 16000)),
     ["prog/arrays.npz: mem.pointers.start[12] = 16000", "points past the end of the synapses table (9730 rows)"]),
    ("program-weight-row-past-end",
     _edit_array("mem.synapses.wrow", _set(5, 2000)),
     ["prog/arrays.npz: mem.synapses.wrow[5] = 2000 points past the end of the weights table (1590 rows)"]),
    ("program-unwritten-region",
     _edit_array("mem.layers.in_region", _set(1, 2)),
     ["prog/arrays.npz: mem.layers.in_region[1] = 2 (pass 1, layer conv1): no earlier pass writes this event region"]),
    ("program-descriptor-count",
     _fewer_descriptors,
     ["prog/arrays.npz: memory 'layers' holds 2 pass descriptors, the program's layers have 3 passes"]),
    ("program-field-width",
     _edit_array("mem.layers.levels", _set(0, 9)),
     ["prog/arrays.npz: mem.layers.levels[0] = 9 is outside [0, 7] (3 bits in this configuration)"]),
    ("program-array-dtype",
     _edit_array("layer0.bias", lambda a: a.astype(np.float64)),
     ["prog/arrays.npz: array 'layer0.bias' holds float64 values, expected 64-bit integers"]),
    ("program-array-shape",
     _edit_array("layer1.source0.weight", lambda a: a[:, :8]),
     ["prog/arrays.npz: array 'layer1.source0.weight' of shape [32, 8, 3, 3] does not map the [16, 8, 8] input"]),
    ("program-array-bomb",
     _array_bomb,
     ["prog/arrays.npz: missing or corrupt parameter arrays"]),
    ("program-wrong-type",
     _edit_manifest(_set_key("layers", 0, "sources", "conv")),
     ["prog/manifest.json: layers[0].sources must be a list of 1 to 256 entries, got 'conv'"]),
    ("program-float-depth",
     _edit_manifest(_set_key("layers", 1, "n_groups", 64.5)),
     ["prog/manifest.json: layers[1].n_groups must be an integer in [0, 16777216], got 64.5"]),
    ("program-huge-shape",
     _edit_manifest(_set_key("layers", 0, "out_shape", [10 ** 12, 8, 8])),
     ["prog/manifest.json: layers[0].out_shape[0] must be an integer in [1, 16777216], got 1000000000000"]),
    ("program-deep-json",
     _edit_manifest(_deep_meta),
     ["prog/manifest.json: malformed JSON (nested too deeply)"]),
    ("program-unknown-producer",
     _edit_manifest(_set_key("layers", 1, "sources", 0, "input", 1)),
     ["prog/manifest.json: layers[1].sources[0].input must be an integer in [-1, 0], got 1"]),
]


def test_table_lists_every_case():
    assert_table_lists([case[0] for case in CASES] + ["trace-overflow"])


@pytest.mark.parametrize("row_id, argv, needles", CASES, ids=[c[0] for c in CASES])
def test_hostile_input(row_id, argv, needles, compiled, tmp_path, capsys):
    args = [str(a) for a in (argv(tmp_path, compiled) if argv.__code__.co_argcount == 2 else argv(tmp_path))]
    capsys.readouterr()
    assert main(args) == 2
    assert_one_error_line(capsys.readouterr().err, args[0], needles)
    for leftover in ("out", "out.json", "out.png"):
        assert not (tmp_path / leftover).exists(), leftover


# ---- the trace memory -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small_trace():
    """The shipped network on the default core with a 64-word trace memory, and one simulated test image."""
    arch = arch_from_dict({"memories": {"trace": 64}}, "small-trace")
    net, _ = load_checkpoint(SHIPPED)
    program = compile_network(net, arch)
    pixels = load_digits_split()[2][:1]
    sims = simulate_batch(program, arch, pixels.reshape(1, -1).numpy())
    return program, arch, pixels, sims


def _rtl_result(sim, arch, overflow: bool) -> dict:
    """What the RTL returns for an inference equal to ``sim``, its trace cut to nothing when ``overflow``."""
    state = state_layout(arch).pack(u=sim.state.reshape(-1, arch.neurons_per_update, arch.max_levels))
    return {"trace": [], "trace_count": arch.memories.trace if overflow else 0, "trace_overflow": overflow,
            "state": state, "cycles": sim.cycles, "cycles_measured": sim.cycles, "saturations": sim.saturations}


def test_trace_overflow_is_refused_not_compared(small_trace):
    """trace-overflow: the simulator's events do not fit the trace memory: nothing is compared, the user is told
    how many words verifying needs."""
    program, arch, pixels, sims = small_trace
    assert sims[0].trace_overflow
    needed = sum(account.output_events for account in sims[0].layers)
    with pytest.raises(UserError, match=rf"the trace memory \(memories.trace = 64 words, configuration default\) "
                                        rf"overflowed on sample 0 .* needs memories.trace >= {needed}$"):
        verify(program, arch, pixels, [_rtl_result(sims[0], arch, overflow=True)], sims)
    report, _ = verify(program, arch, pixels, None, sims)  # the simulator keeps every event: golden == sim holds
    assert report["bit_exact"] and report["trace"] == {"memory_words": 64, "needed_words": needed,
                                                       "rtl_overflowed_samples": []}


def test_rtl_only_trace_overflow_is_one_mismatch(small_trace):
    """An RTL whose trace overflows where the simulator's does not: one trace_overflow mismatch, no spike of its
    truncated trace compared."""
    program, _, pixels, sims = small_trace
    arch = arch_from_dict({"memories": {"trace": 4096}}, "large-trace")
    program = copy.copy(program)
    program.arch_fingerprint = arch.fingerprint()
    sims = simulate_batch(program, arch, pixels.reshape(1, -1).numpy())
    report, _ = verify(program, arch, pixels, [_rtl_result(sims[0], arch, overflow=True)], sims)
    assert not report["bit_exact"] and report["mismatch_count"] == {"sim": 0, "rtl": 1}
    assert report["mismatches"][0]["trace_overflow"] and report["trace"]["rtl_overflowed_samples"] == [0]


# ---- mutation fuzz of the Program format ------------------------------------------------------------------------
JSON_GARBAGE = [0, 1, -1, 2, 7, 255, 2 ** 31, 10 ** 12, -10 ** 12, 2.5, float("nan"), "", "x", None, True, [], [1],
                {}, {"a": [1, {"b": None}]}, [[[[[]]]]]]
ARRAY_VALUES = [0, 1, -1, 3, 127, 255, 4095, 16383, 2 ** 31 - 1, -2 ** 31, 2 ** 62]


def _leaves(value, path=()):
    """Every (path, value) of a JSON document (lists and mappings included)."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, path + (key,))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, path + (index,))


def _mutate_manifest(manifest: dict, rng: random.Random) -> None:
    path, _ = rng.choice([leaf for leaf in _leaves(manifest) if leaf[0] and leaf[0][0] != "format"])
    record = manifest
    for key in path[:-1]:
        record = record[key]
    if rng.random() < 0.15 and isinstance(record, dict):
        del record[path[-1]]
    else:
        record[path[-1]] = copy.deepcopy(rng.choice(JSON_GARBAGE))


def _mutate_array(arrays: dict, rng: random.Random) -> None:
    key = rng.choice(sorted(arrays))
    array = arrays[key]
    how = rng.randrange(8)
    if how <= 2 and array.size:  # a few entries set to values of the array's own range (which pass the width
        integer = array.dtype.kind in "iu"  # checks and reach the table checks), or to negative or huge ones
        flat = array.reshape(-1).astype(np.int64 if integer else np.float64)
        largest = int(np.abs(flat).max()) if integer else 1
        for _ in range(rng.randint(1, 3)):
            value = rng.randint(-1, 2 * largest + 2) if rng.random() < 0.6 else rng.choice(ARRAY_VALUES)
            flat[rng.randrange(flat.size)] = value if integer else rng.random()
        arrays[key] = flat.reshape(array.shape)
    elif how == 3:
        arrays[key] = array.astype(rng.choice([np.float64, np.float32, np.uint8, np.bool_, np.complex64, np.int16]))
    elif how == 4:
        arrays[key] = array[:rng.randrange(max(len(array), 1))] if array.ndim else array
    elif how == 5:
        arrays[key] = array.reshape((1,) + array.shape)
    elif how == 6:
        del arrays[key]
    else:
        arrays[key] = np.array(rng.choice(ARRAY_VALUES))


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout


def test_program_mutation_fuzz(compiled, tmp_path, capsys, monkeypatch):
    """Seeded mutations of manifest.json values and arrays.npz entries: `accel sim` runs (exit 0) or refuses
    in one line (exit 2); never a traceback, an internal error or a hang."""
    import spikecore.accel.flows.cli

    # the plot is not what this fuzzes, and drawing it is most of a successful run's time
    monkeypatch.setattr(spikecore.accel.flows.cli, "plot_sim_report", lambda report, path: None)
    rng = random.Random(20261203)
    base_manifest = json.loads((compiled / "manifest.json").read_text())
    base_arrays = _arrays(compiled)
    outcomes = {0: 0, 2: 0}
    previous = signal.signal(signal.SIGALRM, _alarm)
    try:
        for case in range(300):
            path = tmp_path / f"p{case}"
            path.mkdir()
            manifest, arrays = copy.deepcopy(base_manifest), dict(base_arrays)
            for _ in range(rng.choice([1, 1, 2, 3])):
                if rng.random() < 0.5:
                    _mutate_manifest(manifest, rng)
                else:
                    _mutate_array(arrays, rng)
            (path / "manifest.json").write_text(json.dumps(manifest))
            np.savez(path / "arrays.npz", **arrays)
            capsys.readouterr()
            signal.alarm(20)
            try:
                status = main(["sim", str(path), "--samples", "2", "--out", str(tmp_path / f"r{case}.json"), "--quiet"])
            finally:
                signal.alarm(0)
            captured = capsys.readouterr()
            lines = [line for line in captured.err.splitlines() if line.strip()]
            assert status in (0, 2), (case, captured.err)
            if status == 2:
                assert len(lines) == 1 and lines[0].startswith("accel sim: error: "), (case, captured.err)
            else:
                assert lines == [], (case, captured.err)
            outcomes[status] += 1
            shutil.rmtree(path)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert outcomes[0] > 10 and outcomes[2] > 100, outcomes
