"""Bit layouts of every memory word of the core, defined once.

The compiler packs memory images with these layouts, the simulator reads the same fields, and the RTL
builds its ``amaranth.lib.data`` layouts from them (:func:`spikecore.rtl.layouts.to_amaranth`), so a field can
never drift between the three. Fields are placed from the least significant bit up, in declaration
order; an array field (``shape``) places element ``i`` (C order) at ``offset + i * width``, which is
exactly Amaranth's ``StructLayout``/``ArrayLayout`` placement.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # annotations only: the configuration checks its sizes with these layouts
    from spikecore.accel.contract.config import ArchConfig

# Event-buffer region of the input events; regions 1 .. event_regions - 1 are allocated by the compiler.
REGION_INPUT = 0

@dataclass(frozen=True)
class Field:
    name: str
    width: int
    signed: bool = False
    shape: tuple = ()

    @property
    def count(self) -> int:
        return prod(self.shape) if self.shape else 1

    @property
    def total_width(self) -> int:
        return self.width * self.count


@dataclass(frozen=True)
class Layout:
    name: str
    fields: tuple

    @property
    def width(self) -> int:
        return sum(f.total_width for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def offsets(self) -> dict:
        out, offset = {}, 0
        for f in self.fields:
            out[f.name] = offset
            offset += f.total_width
        return out

    def pack(self, **columns) -> list:
        """Pack records into Python ints. Each column has a leading record axis and then ``shape``.

        Raises ``OverflowError`` naming the field if a value does not fit its width.
        """
        n = None
        for f in self.fields:
            col = np.asarray(columns[f.name], dtype=np.int64).reshape(-1, f.count)
            if n is None:
                n = col.shape[0]
            elif col.shape[0] != n:
                raise ValueError(f"{self.name}: column '{f.name}' has {col.shape[0]} records, expected {n}")
            lo, hi = (-(1 << (f.width - 1)), (1 << (f.width - 1)) - 1) if f.signed else (0, (1 << f.width) - 1)
            if col.size and (col.min() < lo or col.max() > hi):
                raise OverflowError(f"{self.name}.{f.name}: value outside [{lo}, {hi}] of {f.width} bits")
        offsets = self.offsets()
        if self.width <= 63:  # the word fits an int64: pack every record at once
            packed = np.zeros(n or 0, np.int64)
            for f in self.fields:
                col = np.asarray(columns[f.name], dtype=np.int64).reshape(-1, f.count)
                for i in range(f.count):
                    packed |= (col[:, i] & ((1 << f.width) - 1)) << (offsets[f.name] + i * f.width)
            return packed.tolist()
        words = [0] * (n or 0)
        for f in self.fields:
            col = np.asarray(columns[f.name], dtype=np.int64).reshape(-1, f.count)
            mask = (1 << f.width) - 1
            base = offsets[f.name]
            for r in range(n):
                word = words[r]
                for i, v in enumerate(col[r].tolist()):
                    word |= (v & mask) << (base + i * f.width)
                words[r] = word
        return words

    def unpack(self, words) -> dict:
        """Inverse of :meth:`pack`: a dict of int64 arrays with a leading record axis."""
        offsets = self.offsets()
        out = {}
        for f in self.fields:
            mask = (1 << f.width) - 1
            col = np.zeros((len(words), f.count), dtype=np.int64)
            for r, word in enumerate(words):
                for i in range(f.count):
                    v = (int(word) >> (offsets[f.name] + i * f.width)) & mask
                    if f.signed and v >> (f.width - 1):
                        v -= 1 << f.width
                    col[r, i] = v
            out[f.name] = col.reshape((len(words),) + f.shape)
        return out


# Hardware stage kinds (the ``kind`` field of a pass descriptor); a readout is a neuron that never fires. A max
# stage accumulates ``acc = max(acc, v)`` and updates as a sum (only on a core with ``max_pool``).
KIND_NEURON, KIND_SUM, KIND_GATE, KIND_MAX = 0, 1, 2, 3
HARDWARE_KIND = {"neuron": KIND_NEURON, "readout": KIND_NEURON, "sum": KIND_SUM, "gate": KIND_GATE, "max": KIND_MAX}
GATE_TABLE_BITS = 8
#: Width of a layer's leak shift: the decay ``2**-shift`` of every neuron stage, ``shift <= MAX_SHIFT``.
SHIFT_BITS = 3
MAX_SHIFT = (1 << SHIFT_BITS) - 1


def layer_layout(arch: ArchConfig) -> Layout:
    """One pass descriptor (word of the ``layers`` memory).

    A pass accumulates the events of region ``in_region`` through the fan-out tables at ``ptr_base``;
    when ``update`` is set it then updates the ``n_groups`` groups of its stage: accumulators at
    ``acc_base`` (cleared afterwards when ``clear_acc``), membranes at ``state_base`` (neurons only),
    parameters at ``param_base`` (``n_blocks`` channel blocks), emitting into ``out_region``.
    """
    return Layout("layer", (
        Field("kind", 2),
        Field("update", 1),
        Field("clear_acc", 1),
        Field("levels", arch.level_bits),
        Field("shift", SHIFT_BITS),
        Field("truth_table", GATE_TABLE_BITS),
        Field("in_region", arch.region_bits),
        Field("out_region", arch.region_bits),
        Field("ptr_base", arch.addr_bits("pointers")),
        Field("acc_base", arch.addr_bits("state")),
        Field("state_base", arch.addr_bits("state")),
        Field("n_groups", arch.addr_bits("state") + 1),
        Field("param_base", arch.addr_bits("params")),
        Field("n_blocks", arch.addr_bits("params") + 1),
    ))


def pointer_layout(arch: ArchConfig) -> Layout:
    """Fan-out of one input neuron: ``count`` synapse rows starting at ``start``."""
    return Layout("pointer", (
        Field("start", arch.addr_bits("synapses")),
        Field("count", arch.fanout_bits),
    ))


def synapse_layout(arch: ArchConfig) -> Layout:
    """One synapse row: accumulate weight row ``wrow`` into the accumulator row ``row`` (all lanes)."""
    return Layout("synapse", (
        Field("row", arch.addr_bits("state")),
        Field("wrow", arch.addr_bits("weights")),
    ))


def weight_layout(arch: ArchConfig) -> Layout:
    return Layout("weight", (Field("w", arch.weight_bits, True, (arch.lanes,)),))


def param_layout(arch: ArchConfig) -> Layout:
    """Per channel block and update step: bias and the K thresholds of each of the step's
    ``neurons_per_update`` lanes (a channel block is ``update_steps`` consecutive words)."""
    return Layout("param", (
        Field("bias", arch.membrane_bits, True, (arch.neurons_per_update,)),
        Field("threshold", arch.membrane_bits, True, (arch.neurons_per_update, arch.max_levels)),
    ))


def state_layout(arch: ArchConfig) -> Layout:
    """Membranes of one update step of a group: one per lane of the step and level (a group is
    ``update_steps`` consecutive words; the classifier uses level 0 for its logit)."""
    return Layout("state", (Field("u", arch.membrane_bits, True, (arch.neurons_per_update, arch.max_levels)),))


def acc_layout(arch: ArchConfig) -> Layout:
    return Layout("acc", (Field("acc", arch.acc_bits, True, (arch.lanes,)),))


def event_layout(arch: ArchConfig) -> Layout:
    """One event: a neuron index and its value; in the layer-major schedule its value at every timestep
    (``train``, ``max_timesteps`` values, zero beyond the program's T), one word per neuron that fired at all."""
    if arch.layer_major:
        return Layout("event", (
            Field("index", arch.neuron_index_bits),
            Field("train", arch.value_bits, False, (arch.max_timesteps,)),
        ))
    return Layout("event", (
        Field("index", arch.neuron_index_bits),
        Field("value", arch.value_bits),
    ))


def input_layout(arch: ArchConfig) -> Layout:
    """One word of the inputs memory: a pixel; with ``event_input``, an input event: its value, the input's
    index and the timestep it enters at (``docs/core.md``, "Event input")."""
    if arch.event_input:
        return Layout("input", (
            Field("value", arch.input_bits),
            Field("index", arch.neuron_index_bits),
            Field("timestep", arch.timestep_bits),
        ))
    return Layout("input", (Field("value", arch.input_bits),))


def trace_layout(arch: ArchConfig) -> Layout:
    """One emitted event, with the pass (``layer``) that emitted it: in the layer-major schedule the event's
    whole train, else its timestep and value."""
    if arch.layer_major:
        return Layout("trace", (
            Field("layer", arch.addr_bits("layers")),
            Field("index", arch.neuron_index_bits),
            Field("train", arch.value_bits, False, (arch.max_timesteps,)),
        ))
    return Layout("trace", (
        Field("timestep", arch.timestep_bits),
        Field("layer", arch.addr_bits("layers")),
        Field("index", arch.neuron_index_bits),
        Field("value", arch.value_bits),
    ))


def all_layouts(arch: ArchConfig) -> dict:
    return {
        "layers": layer_layout(arch),
        "pointers": pointer_layout(arch),
        "synapses": synapse_layout(arch),
        "weights": weight_layout(arch),
        "params": param_layout(arch),
        "state": state_layout(arch),
        "acc": acc_layout(arch),
        "events": event_layout(arch),
        "inputs": input_layout(arch),
        "trace": trace_layout(arch),
    }


def memory_depths(arch: ArchConfig) -> dict:
    """Depth in words of every memory of the core (``docs/core.md``, table "Memories"): the accumulator and
    state memories have ``memories.state`` rows (a state row is ``update_steps`` words, as is a params row;
    an accumulator row ``acc_slots`` words, one per timestep slot in the layer-major schedule); the event
    memory holds ``event_regions`` regions."""
    mems, steps = arch.memories, arch.update_steps
    return {
        "layers": mems.layers, "pointers": mems.pointers, "synapses": mems.synapses, "weights": mems.weights,
        "params": mems.params * steps, "inputs": mems.inputs, "acc": mems.state * arch.acc_slots, "state": mems.state * steps,
        "events": arch.event_regions * mems.events, "trace": mems.trace,
    }


@dataclass(frozen=True)
class BankSlot:
    """Where one memory lives in its physical memory: word ``a`` of the memory is in slot ``a % pack`` (bits
    ``slot * slot_bits ..``) of physical word ``base + a // pack``."""

    base: int
    pack: int
    slot_bits: int


@dataclass(frozen=True)
class PhysicalMemory:
    """One memory of the netlist: a memory of its own (one member at base 0, one word per word) or a bank."""

    name: str
    width: int
    depth: int
    members: dict          # memory name -> BankSlot, in address order
    granularity: int       # write-enable granularity in bits (the narrowest slot)

    @property
    def is_bank(self) -> bool:
        return len(self.members) > 1


MAX_PACK = 8


def physical_memories(arch: ArchConfig) -> list:
    """The memories of the netlist: one per bank of ``arch.banks`` (``bank0``, ``bank1``, ...), then one per
    memory in no bank. A bank is as wide as its widest member rounded up to a multiple of 8 bits; a narrower
    member packs ``pack`` words (a power of two, at most 8; slots of whole 4-bit nibbles) into each bank word,
    in equal slots, and its words follow the previous member's (``docs/core.md``, "Banks")."""
    layouts, depths = all_layouts(arch), memory_depths(arch)
    banked = {name for bank in arch.banks for name in bank}
    out = []
    for number, bank in enumerate(arch.banks):
        width = -(-max(layouts[name].width for name in bank) // 8) * 8
        members, base = {}, 0
        for name in bank:
            pack = 1
            # slots stay whole nibbles: single-port RAMs enable writes per 4 bits (iCE40 SPRAM), and a slot
            # that splits a nibble makes Yosys emulate the enables in wider, fewer-used RAMs
            while (pack * 2 <= MAX_PACK and pack * 2 * layouts[name].width <= width
                   and (width // (pack * 2)) % 4 == 0):
                pack *= 2
            members[name] = BankSlot(base, pack, width // pack)
            base += -(-depths[name] // pack)
        out.append(PhysicalMemory(f"bank{number}", width, base, members,
                                  min(slot.slot_bits for slot in members.values())))
    for name, depth in depths.items():
        if name not in banked:
            width = layouts[name].width
            out.append(PhysicalMemory(name, width, depth, {name: BankSlot(0, 1, width)}, width))
    return out


def home_of(arch: ArchConfig, name: str) -> tuple:
    """``(PhysicalMemory, BankSlot)`` holding memory ``name``."""
    for memory in physical_memories(arch):
        if name in memory.members:
            return memory, memory.members[name]
    raise KeyError(name)


def to_physical(arch: ArchConfig, images: dict) -> dict:
    """Physical memory images ``{physical name: [words]}`` from memory images ``{memory: [packed words]}``,
    each physical image as long as its last loaded word."""
    out = {}
    for memory in physical_memories(arch):
        placed = {name: images[name] for name in memory.members if name in images}
        if not placed:
            continue
        end = max(slot.base + -(-len(placed[name]) // slot.pack) for name, slot in memory.members.items()
                  if name in placed)
        words = [0] * end
        for name, image in placed.items():
            slot = memory.members[name]
            for address, word in enumerate(image):
                index, part = divmod(address, slot.pack)
                words[slot.base + index] |= int(word) << (part * slot.slot_bits)
        out[memory.name] = words
    return out


def from_physical(arch: ArchConfig, name: str, words, count: int) -> list:
    """Words ``0 .. count-1`` of memory ``name`` from its physical memory's words starting at the member's
    base (``words[0]`` is physical word ``base``)."""
    _, slot = home_of(arch, name)
    mask = (1 << all_layouts(arch)[name].width) - 1
    return [(int(words[a // slot.pack]) >> ((a % slot.pack) * slot.slot_bits)) & mask for a in range(count)]
