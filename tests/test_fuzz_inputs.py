"""Random mutations of every file format the commands read keep the promise: the command succeeds, or it
exits 2 with one line naming what is wrong; never a traceback, an internal error or another exception.

Seeded (the same mutations on every run); a failure names the format, the seed and the mutation. The
Program format (manifest.json, arrays.npz) is fuzzed in tests/test_hostile_numbers.py.
"""
import io
import math
import random
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import torch

from spikecore.accel.contract.checkpoint import shipped_checkpoint_path
from spikecore.accel.flows.cli import main
from spikecore.accel.contract.config import load_arch
from spikecore.errors import UserError
from spikecore.accel.flows.schemas import SCHEMAS
from spikecore.accel.flows.sweep import load_sweep
from spikecore.accel.flows.trainconfig import load_train_config
from spikecore.yamlio import parse_yaml
from spikecore.sim.cost import load_energy_model

ROOT = Path(__file__).parents[1]
SHIPPED = shipped_checkpoint_path()
ENERGY = "e_ac_pj: 0.9\nsram_pj_per_64bit:\n  8192: 10.0\n  32768: 20.0\n"
#: Values a mutation puts where a value was.
ODD_VALUES = [-1, 0, 1, 3, 2 ** 31, 10 ** 30, -(10 ** 30), 0.5, -0.0, float("nan"), float("inf"), "x", "",
              "x" * 5000, None, True, [], {}, [1, 2], {"a": 1}, complex(float("nan"), 1)]
YAML_LITERALS = ["-1", "0", "1e999", ".nan", "-.inf", "0x10", "~", "null", "true", "[]", "{}", "[[[[]]]]",
                 "'x'", '"\\u0000"', "!!binary aGk=", "!!python/object:os.system", "&a 1", "*a", "? x", "|\n  x",
                 "'" + "x" * 3000 + "'", "2001-12-14", "1_000", "0o17", "+.5"]
YAML_CHARACTERS = list("&*:[]{}\n\t-!|>'\"%@#,?0123456789 ") + ["\u00e9", "\x00", "\ufeff"]


def _mutate_text(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines(keepends=True)
    kind = rng.randrange(7)
    if kind == 0 and lines:  # replace a value after a colon by an odd literal
        i = rng.randrange(len(lines))
        head, sep, _ = lines[i].partition(":")
        if sep:
            lines[i] = f"{head}: {rng.choice(YAML_LITERALS)}\n"
    elif kind == 1 and lines:  # duplicate or drop a line
        i = rng.randrange(len(lines))
        lines.insert(i, lines[i]) if rng.random() < 0.5 else lines.pop(i)
    elif kind == 2 and lines:  # swap two lines
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == 3:  # insert characters
        position = rng.randrange(len(text) + 1)
        return (text[:position] + "".join(rng.choices(YAML_CHARACTERS, k=rng.randint(1, 4))) + text[position:]).encode()
    elif kind == 4:  # delete a span
        position = rng.randrange(len(text) + 1)
        return (text[:position] + text[position + rng.randint(1, 20):]).encode()
    elif kind == 5:  # flip a byte (possibly not UTF-8 any more)
        data = bytearray(text.encode())
        if data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    else:  # indent or dedent a line
        if lines:
            i = rng.randrange(len(lines))
            lines[i] = ("  " + lines[i]) if rng.random() < 0.5 else lines[i].lstrip()
    return "".join(lines).encode()


def _sweep_text() -> str:
    text = (ROOT / "examples" / "sweep_digits.yaml").read_text()
    return text.replace("samples: 450", "samples: 4")


FORMATS = {
    "arch": ((ROOT / "examples" / "arch_default.yaml").read_text(), load_arch),
    "train": ((ROOT / "examples" / "train_digits.yaml").read_text(), load_train_config),
    "sweep": (_sweep_text(), load_sweep),
    "energy": (ENERGY, load_energy_model),
}


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_yaml_mutations_are_loaded_or_refused_in_one_line(name, tmp_path):
    text, loader = FORMATS[name]
    rng = random.Random(f"yaml-{name}")
    path = tmp_path / f"{name}.yaml"
    accepted = 0
    for number in range(150):
        mutated = _mutate_text(text, rng)
        for _ in range(rng.randrange(3)):  # sometimes several mutations at once
            mutated = _mutate_text(mutated.decode("utf-8", "replace"), rng)
        path.write_bytes(mutated)
        try:
            loader(path)
        except UserError as exc:
            message = str(exc)
            assert "\n" not in message and str(path) in message, (name, number, mutated, message)
            continue
        except Exception as exc:  # noqa: BLE001 - the point of the test
            pytest.fail(f"{name} mutation {number} raised {type(exc).__name__}: {exc}\n{mutated!r}")
        if name in SCHEMAS:  # what a loader accepts satisfies its schema (the schema is never stricter)
            document = parse_yaml(mutated.decode(), str(path)) or {}
            errors = [e.message for e in jsonschema.Draft202012Validator(SCHEMAS[name]()).iter_errors(document)]
            assert not errors, (name, number, mutated, errors[:2])
        accepted += 1
    assert 10 <= accepted <= 140, f"{accepted} of 150 {name} mutations accepted: the mutations miss their target"


def _run(argv, capsys) -> tuple:
    capsys.readouterr()
    try:
        status = main([str(a) for a in argv])
    except SystemExit as exc:
        status = exc.code
    return status, capsys.readouterr().err


def _assert_promise(status, err, command, what):
    assert status in (0, 2), f"{what}: exit status {status}: {err}"
    if status == 2:
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"accel {command}: error: "), f"{what}: {err}"
    assert "Traceback" not in err, f"{what}: {err}"


def _odd_tensor(tensor: torch.Tensor, rng: random.Random) -> torch.Tensor:
    kind = rng.randrange(7)
    out = tensor.clone()
    if kind == 0 and out.numel():
        out.view(-1)[rng.randrange(out.numel())] = rng.choice([float("nan"), float("inf"), -float("inf"), 1e30])
    elif kind == 1:
        out = out.to(torch.complex64) * complex(1, rng.choice([0.0, float("nan")]))
    elif kind == 2:
        out = out.to(torch.int64)
    elif kind == 3:
        out = out.reshape(-1)[: max(0, out.numel() - 1)]
    elif kind == 4:
        out = -out.abs()  # negative (a variance, a gain)
    elif kind == 5:
        out = torch.zeros(0)
    else:
        out = out * rng.choice([0.0, 1e12, -1e12])
    return out


def _mutate_checkpoint(payload: dict, rng: random.Random) -> dict:
    payload = {**payload, "config": dict(payload["config"]), "state_dict": dict(payload["state_dict"])}
    kind = rng.randrange(5)
    if kind == 0:
        key = rng.choice(sorted(payload["config"]))
        payload["config"][key] = rng.choice(ODD_VALUES)
    elif kind == 1:
        key = rng.choice(sorted(payload["state_dict"]))
        payload["state_dict"][key] = _odd_tensor(payload["state_dict"][key], rng)
    elif kind == 2:
        del payload[rng.choice(["config", "state_dict", "format", "version", "model"])]
    elif kind == 3:
        payload[rng.choice(["config", "state_dict", "model", "version"])] = rng.choice(ODD_VALUES)
    else:
        payload["config"][rng.choice(["levels", "timesteps", "channels", "image_size", "classes"])] = \
            rng.choice([0, -3, 10 ** 9, [10 ** 9, 1], [], 2.5, "3"])
    return payload


def test_checkpoint_mutations_compile_or_fail_in_one_line(tmp_path, capsys):
    original = torch.load(SHIPPED, weights_only=True)
    rng = random.Random("checkpoint")
    path = tmp_path / "m.pt"
    for number in range(60):
        payload = _mutate_checkpoint(original, rng)
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        path.write_bytes(buffer.getvalue())
        status, err = _run(["compile", path, "--out", tmp_path / f"p{number}"], capsys)
        _assert_promise(status, err, "compile", f"checkpoint mutation {number}")
    raw = SHIPPED.read_bytes()
    for number in range(20):  # damaged bytes: truncation, flipped bytes inside the archive
        data = bytearray(raw[: rng.randrange(len(raw))] if number % 2 else raw)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        path.write_bytes(bytes(data))
        status, err = _run(["compile", path, "--out", tmp_path / f"b{number}"], capsys)
        _assert_promise(status, err, "compile", f"checkpoint byte damage {number}")


def _odd_array(array: np.ndarray, rng: random.Random):
    kind = rng.randrange(6)
    if kind == 0 and array.size and array.dtype.kind == "f":
        array = array.copy()
        array.reshape(-1)[rng.randrange(array.size)] = rng.choice([math.nan, math.inf, -math.inf])
        return array
    if kind == 1:
        return array.reshape(-1)[: max(0, array.size - 1)]
    if kind == 2:
        return -np.abs(array.astype(np.float64)) if array.dtype.kind in "fiu" else array
    if kind == 3:
        return np.zeros((0,))
    if kind == 4:
        return np.array(rng.choice([1e30, -1e30, 0.0, 7]))
    return array.astype(np.complex64) * complex(1, math.nan) if array.dtype.kind in "fiu" else array


def test_nir_mutations_import_or_fail_in_one_line(tmp_path, capsys):
    import h5py

    nir_file = tmp_path / "m.nir"
    assert main(["export", str(SHIPPED), "--nir", str(nir_file)]) == 0
    datasets = []
    with h5py.File(nir_file, "r") as handle:
        handle.visititems(lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None)
    rng = random.Random("nir")
    for number in range(40):
        mutated = tmp_path / f"m{number}.nir"
        mutated.write_bytes(nir_file.read_bytes())
        name = rng.choice(datasets)
        with h5py.File(mutated, "r+") as handle:
            value = handle[name][()]
            replacement = _odd_array(value, rng) if isinstance(value, np.ndarray) else rng.choice([b"", b"x", 0])
            del handle[name]
            handle[name] = replacement
        status, err = _run(["import", mutated, "--out", tmp_path / f"c{number}.pt"], capsys)
        _assert_promise(status, err, "import", f"NIR mutation {number} ({name})")
    for number in range(5):
        cut = tmp_path / f"cut{number}.nir"
        cut.write_bytes(nir_file.read_bytes()[: rng.randrange(nir_file.stat().st_size)])
        status, err = _run(["import", cut, "--out", tmp_path / f"k{number}.pt"], capsys)
        _assert_promise(status, err, "import", f"truncated NIR {number}")
