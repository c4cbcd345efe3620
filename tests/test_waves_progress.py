"""Waveforms (``accel verify --waves DIR``), the first difference of a planted fault, and progress that tells
the truth: the RTL build and inferences, and the synthesis stages as they end.

Two digits images run on Icarus (through :func:`spikecore.rtl.runner.run_inferences`, one after the other) and on
Verilator (through the command line, with a flipped weight bit); each writes one FST file per image, whose
hierarchy (read by the small FST reader below: GTKWave's ``fst2vcd`` is not installed) holds the core's
named signals and none of Yosys's ``$N`` wires.
"""
import dataclasses
import gzip
import json
import re
import struct
import zlib

import numpy as np
import pytest

from spikecore.accel.flows.cli import main
from spikecore.accel.contract.layouts import all_layouts
from spikecore.accel.flows.verify import emission_schedule
from spikecore.rtl.runner import WAVES_FILE, run_inferences
from spikecore.sim.engine import simulate_batch

SAMPLES = 2
#: A weight bit whose flip changes spikes of the first two test images (conv1's fan-out).
FLIP = ("weights", 20, 6)

# ---- a minimal FST reader: the hierarchy block only (fstapi.h's block and record tags) ----------------
HIERARCHY_GZIP, HIERARCHY_LZ4, HIERARCHY_LZ4_TWICE = 4, 6, 7
SCOPE, UPSCOPE, ATTRIBUTE_BEGIN, ATTRIBUTE_END = 254, 255, 252, 253


def _lz4_block(data: bytes, size: int) -> bytes:
    """Decompress one LZ4 block (the format's sequences of literals and back references)."""
    out, i = bytearray(), 0

    def length(value: int) -> int:
        nonlocal i
        if value == 15:
            while True:
                extra = data[i]
                i += 1
                value += extra
                if extra != 255:
                    break
        return value

    while i < len(data):
        token = data[i]
        i += 1
        literals = length(token >> 4)
        out += data[i:i + literals]
        i += literals
        if i >= len(data):
            break
        offset = data[i] | data[i + 1] << 8
        i += 2
        for _ in range(length(token & 15) + 4):
            out.append(out[-offset])
    assert len(out) == size
    return bytes(out)


def _varint(data: bytes, i: int) -> tuple:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 127) << shift
        shift += 7
        if byte < 128:
            return value, i


def fst_signal_names(path) -> list:
    """Full names (``scope.scope.signal``) of every variable in an FST file's hierarchy."""
    data, i, hierarchy = path.read_bytes(), 0, None
    while i < len(data) and hierarchy is None:
        kind, size = data[i], struct.unpack(">Q", data[i + 1:i + 9])[0]
        body = data[i + 9:i + 1 + size]
        length = struct.unpack(">Q", body[:8])[0]
        if kind == HIERARCHY_GZIP:
            hierarchy = gzip.decompress(body[8:]) if body[8:10] == b"\x1f\x8b" else zlib.decompress(body[8:])
        elif kind == HIERARCHY_LZ4:
            hierarchy = _lz4_block(body[8:], length)
        elif kind == HIERARCHY_LZ4_TWICE:
            once, start = _varint(body, 8)
            hierarchy = _lz4_block(_lz4_block(body[start:], once), length)
        i += 1 + size
    assert hierarchy is not None, f"{path}: no hierarchy block"
    scopes, names, i = [], [], 0
    while i < len(hierarchy):
        tag = hierarchy[i]
        i += 1
        if tag == SCOPE:  # scope type, name, component
            end = hierarchy.index(b"\0", i + 1)
            scopes.append(hierarchy[i + 1:end].decode())
            i = hierarchy.index(b"\0", end + 1) + 1
        elif tag == UPSCOPE:
            scopes.pop()
        elif tag == ATTRIBUTE_BEGIN:  # type, subtype, name, argument
            i = hierarchy.index(b"\0", i + 2) + 1
            _, i = _varint(hierarchy, i)
        elif tag != ATTRIBUTE_END:  # a variable: direction, name, length, alias
            end = hierarchy.index(b"\0", i + 1)
            names.append(".".join(scopes + [hierarchy[i + 1:end].decode()]))
            _, i = _varint(hierarchy, end + 1)
            _, i = _varint(hierarchy, i)
    return names


def check_waves(folder, samples: int) -> None:
    files = sorted(folder.glob("*.fst"))
    assert [f.name for f in files] == [WAVES_FILE.format(number=n) for n in range(samples)]
    assert not [f for f in folder.iterdir() if f.suffix != ".fst"]  # no temporaries left
    for path in files:
        names = [re.sub(r"\\| \[\d+:\d+\]$", "", name) for name in fst_signal_names(path)]
        for signal in ("core.cycles", "core.trace_write_en", "core.descriptor.acc_base", "core.schedule_state"):
            assert any(name.endswith(signal) for name in names), (path, signal)
        assert not [name for name in names if re.search(r"\.\$\d+$", name)]  # no Yosys wires


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def images(digits_test_set):
    pixels = digits_test_set[0][:SAMPLES]
    return pixels, pixels.reshape(SAMPLES, -1).numpy()


class Progress:
    """What :func:`spikecore.rtl.runner.run_inferences` tells a progress bar."""

    def __init__(self):
        self.lines, self.updates = [], []

    def write(self, line):
        self.lines.append(line)

    def update(self, n):
        self.updates.append(n)


# ---- Icarus: waves, the trace monitor against the simulator's schedule, per-image progress -------------
def test_icarus_waves_stamps_and_progress(digits_program, arch, images, rtl_cache, tmp_path):
    pixels, flat = images
    progress = Progress()
    results = run_inferences(digits_program.memory_image(arch), flat.tolist(), arch, rtl_cache / "rtl",
                             simulator="icarus", jobs=1, waves=tmp_path / "waves", progress=progress)
    check_waves(tmp_path / "waves", SAMPLES)
    assert progress.updates == [1, 1]  # one step as each image completes
    assert all(re.fullmatch(r"compiling the core of \S+ with Icarus, about \d+ s \(once per configuration\)", line)
               for line in progress.lines)
    sims = simulate_batch(digits_program, arch, flat)
    for n, (rtl, sim) in enumerate(zip(results, sims)):
        schedule, cycles = emission_schedule(digits_program, arch, flat[n], sim)
        assert cycles == sim.cycles == rtl["cycles"]
        # every trace write happened at the cycle the simulator's account places it
        assert [event[4] for event in schedule] == rtl["trace_cycles"] and len(schedule) > 1000
        times = np.array(rtl["trace_times_ns"])
        assert np.array_equal(times - times[0], (np.array(rtl["trace_cycles"]) - rtl["trace_cycles"][0]) * 10)
        assert rtl["waves_file"] == str((tmp_path / "waves" / WAVES_FILE.format(number=n)).resolve())


# ---- Verilator through the command line: a planted fault, waves, the progress on stderr ----------------
def test_verilator_waves_name_the_first_difference_of_a_fault(digits_program, arch, images, tmp_path, capsys):
    pixels, flat = images
    program_dir = tmp_path / "program"
    digits_program.save(program_dir)
    memory, word, bit = FLIP
    code = main(["verify", str(program_dir), "--samples", str(SAMPLES), "--simulator", "verilator",
                 "--flip-bit", f"{memory}:{word}:{bit}", "--waves", str(tmp_path / "waves"),
                 "--out", str(tmp_path / "report.json")])
    captured = capsys.readouterr()
    assert code == 1
    check_waves(tmp_path / "waves", SAMPLES)
    assert re.search(rf"rtl \(verilator\): 100%.*{SAMPLES}/{SAMPLES}", captured.err)
    report = json.loads((tmp_path / "report.json").read_text())
    found = report["first_difference"]
    assert "first difference: sample" in captured.out and f"wave time {found['wave_time_ns']} ns" in captured.out

    # the simulator, with the same bit flipped, emits what the faulty RTL emitted, at the same cycles
    faulty = digits_program.memory_image(arch)  # the packed words, with the bit flipped as the RTL loads them
    faulty[memory][word] ^= 1 << bit
    flipped = dataclasses.replace(digits_program, memories={
        **digits_program.memories, memory: all_layouts(arch)[memory].unpack(faulty[memory])})
    n = found["sample"]
    good = simulate_batch(digits_program, arch, flat[n:n + 1], engine="tables")[0]
    bad = simulate_batch(flipped, arch, flat[n:n + 1], engine="tables")[0]
    expected, _ = emission_schedule(digits_program, arch, flat[n], good)
    got, _ = emission_schedule(flipped, arch, flat[n], bad)
    k = found["trace_word"]
    assert [e[:4] for e in expected[:k]] == [g[:4] for g in got[:k]] and expected[k][:4] != got[k][:4]
    assert found["sim_cycle"] == expected[k][4]  # the simulator's cycle of the event expected there
    assert found["rtl_cycle"] == got[k][4]  # measured on the RTL: the faulty simulator's cycle of that event
    assert found["got"]["neuron"] == got[k][2] and found["expected"]["neuron"] == expected[k][2]
    assert found["cycle"] == min(found["sim_cycle"], found["rtl_cycle"])
    assert found["waves_file"].endswith(WAVES_FILE.format(number=n)) and found["wave_time_ns"] > found["cycle"] * 10


def test_waves_into_a_file_is_one_line(tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder\n")
    code = main(["verify", "nowhere", "--samples", "1", "--waves", str(taken), "--out", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--waves" in err and str(taken) in err and len(err.splitlines()) == 1


# ---- synthesis: a stage counts when it ends --------------------------------------------------------
def test_synthesis_bar_advances_as_stages_end(monkeypatch, tmp_path, capsys):
    import time

    import yaml

    from spikecore.accel.flows import synth

    def fake_synthesize(arch, target, workdir, verilog, versions, progress, place):
        for stage in ("yosys synth_ice40", "nextpnr-ice40"):
            progress(stage)
            time.sleep(1.2)  # long enough for the bar to be redrawn while the stage runs
            progress(stage, 1.2)
        (workdir / "yosys.log").write_text("fake\n")
        return {"target": target.name, "device": target.device, "arch": arch.name, "seconds": {},
                "capacity": target.capacity, "lut": 1, "ff": 1, "bram": 0, "spram": 0, "dsp": 0,
                "fits": True, "fmax_mhz": None, "fmax_reason": "fake", "meets_clock": None}

    monkeypatch.setattr(synth, "_synthesize", fake_synthesize)
    monkeypatch.setattr(synth, "_read_entry", lambda *args, **kwargs: None)  # never cached
    monkeypatch.setenv("SPIKECORE_CACHE", str(tmp_path / "cache"))
    arch_file = tmp_path / "tiny.yaml"
    arch_file.write_text(yaml.safe_dump(TINY))
    assert main(["synth", "--arch", str(arch_file), "--target", "ice40-up5k", "--out", str(tmp_path / "out")]) == 0
    frames = [frame.strip() for frame in capsys.readouterr().err.split("\r") if "stages" in frame]
    # while Yosys runs the bar shows 1/3 (the Verilog is done), and 2/3 only once Yosys has ended
    running = [frame for frame in frames if "yosys synth_ice40 running" in frame]
    assert running and all("1/3 stages" in frame for frame in running)
    assert all("yosys synth_ice40 1.2 s" in frame for frame in frames if "2/3 stages" in frame)
    assert re.search(r"3/3 stages \[[\d:]+\], verilog [\d.]+ s, yosys synth_ice40 1.2 s, nextpnr-ice40 1.2 s", frames[-1])


TINY = {"name": "tiny", "lanes": 2, "weight_bits": 4, "acc_bits": 8, "membrane_bits": 8, "input_bits": 4,
        "max_levels": 1, "max_timesteps": 2,
        "memories": {"layers": 2, "pointers": 16, "synapses": 16, "weights": 8, "params": 2, "state": 4, "events": 8,
                     "inputs": 8, "trace": 8}}
