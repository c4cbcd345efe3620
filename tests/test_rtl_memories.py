"""The core's memories in ``core.v``: each an instance of the one RAM module, made through Amaranth's documented
``get_memory`` platform hook (``spikecore.rtl.verilog.RamPlatform``), starting zero and taking its preload.

Two tiny configurations: one with a bank (packed members, byte enables) and memories of one word (an address
of no bits), one without banks. Under Icarus every memory is preloaded from a file
of random words through its plusargs and written back through its backdoor path
(``spikecore.rtl.verilog.memory_path``, the paths the simulation top's dumps use).
"""
import random
import subprocess

import pytest
from amaranth.hdl import Fragment
from amaranth.lib.memory import Memory

from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.contract.layouts import physical_memories
from spikecore.rtl.banks import CoreMemory
from spikecore.rtl.verilog import (PRELOAD_PLUSARG, PRELOAD_WORDS_PLUSARG, RAM_MODULE, SIM_TOP, RamPlatform, generate,
                                   memory_path)

TINY = {"lanes": 2, "weight_bits": 4, "acc_bits": 8, "membrane_bits": 8, "input_bits": 4, "max_levels": 1,
        "max_timesteps": 2}
CONFIGURATIONS = {
    "banked": {**TINY, "name": "banked",
               "memories": {"layers": 1, "pointers": 16, "synapses": 16, "weights": 8, "params": 1, "state": 4,
                            "events": 8, "inputs": 8, "trace": 8},
               "banks": [["pointers", "synapses", "weights", "state", "trace", "inputs"]]},
    "unbanked": {**TINY, "name": "unbanked",
                 "memories": {"layers": 2, "pointers": 16, "synapses": 16, "weights": 8, "params": 2, "state": 4,
                              "events": 8, "inputs": 8, "trace": 8}},
}
CHECK_MODULE = "preload_check"


def read_hex_words(path) -> list:
    """The words of a ``$writememh`` file (comment lines skipped)."""
    return [int(line, 16) for line in path.read_text().split("\n") if line.strip() and not line.startswith("//")]


@pytest.mark.parametrize("name", CONFIGURATIONS)
def test_every_memory_starts_zero_and_takes_its_preload(name, tmp_path):
    arch = arch_from_dict(CONFIGURATIONS[name], "test configuration")
    memories = physical_memories(arch)
    assert any(memory.is_bank for memory in memories) == (name == "banked")
    assert (1 in {memory.depth for memory in memories}) == (name == "banked")  # a one-word RAM: a padded address
    core = generate(arch, tmp_path / "rtl")
    rng = random.Random(11)
    plusargs, expected = [], {}
    lines = [f"module {CHECK_MODULE};", f"  {SIM_TOP} sim ();", "  initial begin", "    #1;"]
    for memory in memories:
        # the first half of the words from the file, the rest as they started
        words = [rng.getrandbits(memory.width) for _ in range((memory.depth + 1) // 2)]
        (tmp_path / f"{memory.name}.hex").write_text("".join(f"{word:x}\n" for word in words))
        plusargs += [f"+{PRELOAD_PLUSARG.format(memory=memory.name)}={tmp_path / memory.name}.hex",
                     f"+{PRELOAD_WORDS_PLUSARG.format(memory=memory.name)}={len(words)}"]
        expected[memory.name] = words + [0] * (memory.depth - len(words))
        lines.append(f'    $writememh("{tmp_path / memory.name}.dump", sim.{memory_path(memory)});')
    lines += ["    $finish;", "  end", "endmodule", ""]
    (tmp_path / "check.v").write_text("\n".join(lines))
    compiled = subprocess.run(["iverilog", "-g2012", "-s", CHECK_MODULE, "-o", str(tmp_path / "check.vvp"), str(core),
                               str(tmp_path / "check.v")], capture_output=True, text=True)
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    ran = subprocess.run(["vvp", "-n", str(tmp_path / "check.vvp"), *plusargs], capture_output=True, text=True,
                         cwd=tmp_path)
    assert ran.returncode == 0, (ran.stdout + ran.stderr)[-2000:]
    assert {memory: read_hex_words(tmp_path / f"{memory}.dump") for memory in expected} == expected


def test_generation_refuses_a_memory_that_escaped_the_ram_module(tmp_path, monkeypatch):
    """Without the platform's hook Amaranth writes each memory itself: the generator's guard must notice."""
    arch = arch_from_dict(CONFIGURATIONS["banked"], "test configuration")
    monkeypatch.delattr(RamPlatform, "get_memory")
    with pytest.raises(RuntimeError, match=rf"expected the memories .* as {RAM_MODULE} instances .* found instances "
                                           r"none and \d+ memory arrays"):
        generate(arch, tmp_path)


def test_ram_platform_refuses_memories_it_cannot_make():
    """Amaranth asks the platform for each memory it elaborates (``Fragment.get``, as the Verilog back end does)."""
    unnamed = Memory(shape=8, depth=4, init=[])
    unnamed.read_port(), unnamed.write_port()
    with pytest.raises(TypeError, match="needs a spikecore.rtl.banks.CoreMemory"):
        Fragment.get(unnamed, RamPlatform())
    asynchronous = CoreMemory("acc", shape=8, depth=4)
    asynchronous.read_port(domain="comb"), asynchronous.write_port()
    with pytest.raises(ValueError, match="memory 'acc': spikecore_ram has one synchronous read port"):
        Fragment.get(asynchronous, RamPlatform())
