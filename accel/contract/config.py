"""The architecture configuration: a validated YAML description of one core.

The configuration fixes every width and memory depth of the core. The compiler checks a network against
it, the simulator charges cycles under it and the RTL generator sizes the hardware from it, so all three
read the same object.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from importlib import resources
from pathlib import Path

import yaml

from spikecore.errors import UserError, short_repr
from spikecore.yamlio import check_int, check_keys, load_yaml, suggest

MULTIVALUE_MODES = ("repeat", "bitserial")

#: What a configuration's ``name`` may be: it is written into reports, file names and generated files.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}")

#: Loop orders of the core (``docs/core.md``, "Schedules"): every pass at each timestep in turn, or every
#: timestep of a pass in turn (each synapse row's weight fetched once for all the timesteps an input fired in).
SCHEDULES = ("timestep_major", "layer_major")

#: Widest event word a layer-major core may have (``max_timesteps`` values of ``value_bits`` and an index).
MAX_EVENT_BITS = 256

#: Every memory of the core (``docs/core.md``); the accumulator memory has no depth of its own (it has the
#: rows of ``memories.state``), the event memory holds ``event_regions`` regions.
MEMORY_NAMES = ("layers", "pointers", "synapses", "weights", "params", "inputs", "acc", "state", "events", "trace")

#: Memories the schedule touches in the same cycle, or whose read data must stay on the port while another of
#: the set is read (``docs/core.md``, "Banks"): no two of a set may share a single-port bank.
BANK_CONFLICTS = (
    ({"weights", "acc"}, "read together for every synapse row (state WRD)"),
    ({"acc", "state", "params"}, "read together by the update (state URD; the accumulator row stays on its port "
                                 "while the group's membranes and parameters are read)"),
    ({"inputs", "events"}, "read and written in the same cycle by the input scan (state SCAN)"),
    ({"events", "trace"}, "written together for every output event (state EMIT)"),
)


#: Highest clock a configuration may name (MHz).
MAX_CLOCK_MHZ = 2000
#: Widest memory word: one signal of the generated netlist (Amaranth's limit on a net's width).
MAX_WORD_BITS = (1 << 16) - 1
#: Largest total of on-chip memory a configuration may declare (4 Gbit): the generator, the simulators and
#: the RTL runs hold every memory in host memory; the bench's ResNet-20 core needs 360 Mbit.
MAX_MEMORY_BITS = 1 << 32


@dataclass(frozen=True)
class Memories:
    """Depths (number of words) of the core's memories."""

    layers: int = 16
    pointers: int = 2048
    synapses: int = 16384
    weights: int = 2048
    params: int = 64
    state: int = 256
    events: int = 2048
    inputs: int = 256
    trace: int = 8192


#: ``memories.NAME``: (smallest, largest) depth in words.
MEMORY_LIMITS = {
    "layers": (1, 256),
    "pointers": (2, 1 << 20),
    "synapses": (2, 1 << 22),
    "weights": (2, 1 << 20),
    "params": (1, 1 << 16),
    "state": (2, 1 << 20),
    "events": (2, 1 << 20),
    "inputs": (2, 1 << 20),
    "trace": (0, 1 << 22),
}


@dataclass(frozen=True)
class ArchConfig:
    """One core configuration.

    Attributes
    ----------
    lanes : int
        Accumulate (AC) lanes: output neurons updated in parallel; a power of two.
    weight_bits, acc_bits, membrane_bits : int
        Signed widths of weights, synaptic accumulators and membranes (thresholds and biases share the
        membrane width).
    input_bits : int
        Unsigned width of an encoding-layer input value (pixel).
    max_levels : int
        Largest number of MLF levels K a layer may use (one membrane per level per neuron).
    max_timesteps : int
        Largest T a program may use (sizes the timestep counter and trace field).
    multivalue : str
        How multi-valued inputs (pixels, spike counts, sums) are handled without multipliers: ``repeat``
        adds the weight ``v`` times (``v`` cycles), ``bitserial`` adds ``w << b`` for each set bit ``b`` of
        ``v`` (``popcount(v)`` cycles, one shifter per lane).
    event_regions : int
        Event buffers of the event memory (each ``memories.events`` deep): region 0 holds the input
        events, the others the outputs of stages still to be consumed (residual networks need more).
    clock_mhz : float
        Clock used to turn cycles into latency and throughput.
    update_lanes : int
        Neurons the update phase handles per step (a power of two dividing ``lanes``; 0: all ``lanes`` at
        once). Fewer makes the state and params words ``lanes / update_lanes`` times narrower (and as many
        times deeper) and the neuron unit as many times smaller, at two cycles per step.
    banks : tuple of tuple of str
        Memories that share one single-port memory each (``docs/core.md``, "Banks"): on an FPGA with large
        single-port RAM (the iCE40 UP5K's SPRAM) several small memories become one large one. Members
        must never be accessed in the same cycle (:data:`BANK_CONFLICTS`).
    schedule : str
        Loop order (``docs/core.md``, "Schedules"): ``timestep_major`` runs every pass at each timestep in
        turn; ``layer_major`` runs every timestep of a pass in turn, so that an input's pointer, synapse rows
        and weight rows are read once for all the timesteps it fired in (weight reuse over T). Its event
        words carry a value per timestep (``max_timesteps`` of them) and its accumulator memory a row per
        timestep slot (``2**timestep_bits`` per row).
    max_pool : bool
        A comparator in each AC lane (``docs/core.md``): the ``max`` stage kind, max pooling of multi-valued
        events (``acc = max(acc, v)`` on the lanes of a nonzero weight, one ACC cycle per synapse row).
        Without it, max pools of binary spikes still run (as gates) and those of multi-valued events are
        refused.
    event_input : bool
        Input as events (``docs/core.md``, "Event input"): the host writes the input's events, one word
        ``(timestep, index, value)`` each, sorted by timestep, instead of a pixel image, and the input scan runs at
        the start of every timestep over that timestep's words only (an event camera's frames, a different
        image each timestep, without a scan of the empty pixels); ``memories.inputs`` is the number of input
        events an inference may have. Timestep-major schedule only.
    memories : Memories
        Depth of each memory in words.
    """

    name: str = "default"
    lanes: int = 8
    weight_bits: int = 8
    acc_bits: int = 20
    membrane_bits: int = 20
    input_bits: int = 8
    max_levels: int = 4
    max_timesteps: int = 16
    multivalue: str = "repeat"
    event_regions: int = 4
    clock_mhz: float = 24.0
    update_lanes: int = 0
    banks: tuple = ()
    schedule: str = "timestep_major"
    max_pool: bool = False
    event_input: bool = False
    memories: Memories = field(default_factory=Memories)

    # ---- derived widths -------------------------------------------------------------------------
    @property
    def lane_bits(self) -> int:
        return (self.lanes - 1).bit_length()

    @property
    def neurons_per_update(self) -> int:
        """Neurons updated per update step (``update_lanes``, or every lane)."""
        return self.update_lanes or self.lanes

    @property
    def update_steps(self) -> int:
        """Update steps per lane group: the state and params words of one group (a power of two)."""
        return self.lanes // self.neurons_per_update

    @property
    def layer_major(self) -> bool:
        return self.schedule == "layer_major"

    @property
    def acc_slots(self) -> int:
        """Accumulator words per accumulator row: one per timestep slot (``2**timestep_bits``) in the
        layer-major schedule, where every timestep of a pass accumulates before the update; else 1."""
        return 1 << self.timestep_bits if self.layer_major else 1

    def addr_bits(self, memory: str) -> int:
        """Address width of a memory (at least 1 bit)."""
        return max(1, (getattr(self.memories, memory) - 1).bit_length())

    @property
    def neuron_index_bits(self) -> int:
        """Width of a neuron (or input) index inside one layer (with ``event_input``, an input index is bounded
        by the pointers memory, not by the inputs memory, which then holds events)."""
        inputs = self.addr_bits("pointers") if self.event_input else self.addr_bits("inputs")
        return max(self.addr_bits("state") + self.lane_bits, inputs)

    @property
    def value_bits(self) -> int:
        """Width of an event value: a pixel or a spike count 0..max_levels."""
        return max(self.input_bits, self.max_levels.bit_length())

    @property
    def timestep_bits(self) -> int:
        return max(1, (self.max_timesteps - 1).bit_length())

    @property
    def region_bits(self) -> int:
        return max(1, (self.event_regions - 1).bit_length())

    @property
    def level_bits(self) -> int:
        return self.max_levels.bit_length()

    @property
    def fanout_bits(self) -> int:
        """Width of a fan-out count (number of synapse rows of one input)."""
        return self.addr_bits("synapses") + 1

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["banks"] = [list(bank) for bank in self.banks]
        return out

    def fingerprint(self) -> str:
        """A short digest of everything that shapes the hardware (the name does not), for Programs and caches.

        ``update_lanes`` is digested by what it means (0 and ``lanes`` are the same core), and none of it,
        ``banks``, ``schedule``, ``max_pool`` and ``event_input`` is digested when it has its default, so
        configurations from before they existed keep their fingerprints."""
        fields_ = {k: v for k, v in self.to_dict().items() if k != "name"}
        fields_["update_lanes"] = self.neurons_per_update
        if self.update_steps == 1:
            del fields_["update_lanes"]
        if not self.banks:
            del fields_["banks"]
        if not self.layer_major:
            del fields_["schedule"]
        if not self.max_pool:
            del fields_["max_pool"]
        if not self.event_input:
            del fields_["event_input"]
        text = json.dumps(fields_, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


#: Integer keys of the configuration: (smallest, largest) value.
SCALAR_LIMITS = {
    "lanes": (1, 256),
    "weight_bits": (2, 32),
    "acc_bits": (4, 64),
    "membrane_bits": (4, 64),
    "input_bits": (1, 16),
    "max_levels": (1, 8),
    "max_timesteps": (1, 1024),
    "event_regions": (2, 16),
    "update_lanes": (0, 256),
}


def arch_from_dict(data, source: str = "<arch>") -> ArchConfig:
    """Validate a mapping and build an :class:`ArchConfig`; raises :class:`UserError` naming the key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UserError(f"{source}: expected a mapping of configuration keys, got {type(data).__name__}")
    top_keys = [f.name for f in fields(ArchConfig)]
    check_keys(data, top_keys, "", source)
    kwargs = {}
    for key, value in data.items():
        if key == "memories":
            if not isinstance(value, dict):
                raise UserError(f"{source}: key 'memories' must be a mapping")
            mem_keys = [f.name for f in fields(Memories)]
            check_keys(value, mem_keys, "memories.", source)
            mems = {k: check_int(v, f"memories.{k}", source, *MEMORY_LIMITS[k]) for k, v in value.items()}
            kwargs["memories"] = Memories(**mems)
        elif key in SCALAR_LIMITS:
            kwargs[key] = check_int(value, key, source, *SCALAR_LIMITS[key])
        elif key == "name":
            kwargs[key] = _name(value, source)
        elif key == "multivalue":
            if value not in MULTIVALUE_MODES:
                raise UserError(f"{source}: key 'multivalue' = {value!r} is not one of {', '.join(MULTIVALUE_MODES)}")
            kwargs[key] = value
        elif key == "schedule":
            if value not in SCHEDULES:
                raise UserError(f"{source}: key 'schedule' = {value!r} is not one of {', '.join(SCHEDULES)}")
            kwargs[key] = value
        elif key == "banks":
            kwargs[key] = _banks(value, source)
        elif key in ("max_pool", "event_input"):
            if not isinstance(value, bool):
                raise UserError(f"{source}: key '{key}' = {short_repr(value)} must be true or false")
            kwargs[key] = value
        elif key == "clock_mhz":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_CLOCK_MHZ:
                raise UserError(f"{source}: key 'clock_mhz' = {short_repr(value)} must be a number in "
                                f"(0, {MAX_CLOCK_MHZ}]")
            kwargs[key] = float(value)
    arch = ArchConfig(**kwargs)
    if arch.lanes & (arch.lanes - 1):
        raise UserError(f"{source}: key 'lanes' = {arch.lanes} must be a power of two")
    if arch.acc_bits > arch.membrane_bits:
        raise UserError(f"{source}: key 'acc_bits' = {arch.acc_bits} must not exceed membrane_bits = {arch.membrane_bits}")
    if arch.weight_bits > arch.acc_bits:
        raise UserError(f"{source}: key 'weight_bits' = {arch.weight_bits} must not exceed acc_bits = {arch.acc_bits}")
    if arch.update_lanes and (arch.update_lanes & (arch.update_lanes - 1) or arch.update_lanes > arch.lanes):
        raise UserError(f"{source}: key 'update_lanes' = {arch.update_lanes} must be a power of two no larger than "
                        f"lanes = {arch.lanes} (or 0: all lanes)")
    if arch.layer_major:
        event_bits = arch.neuron_index_bits + arch.max_timesteps * arch.value_bits
        if event_bits > MAX_EVENT_BITS:
            raise UserError(f"{source}: key 'schedule' = 'layer_major' needs event words of max_timesteps x "
                            f"value_bits + index = {arch.max_timesteps} x {arch.value_bits} + "
                            f"{arch.neuron_index_bits} = {event_bits} bits, more than {MAX_EVENT_BITS}: "
                            f"lower max_timesteps")
    if arch.event_input and arch.layer_major:
        raise UserError(f"{source}: key 'event_input' = true needs schedule: timestep_major (the layer-major "
                        f"input scan would have to gather each input's events of every timestep into one train)")
    _check_memory_sizes(arch, source)
    for number, bank in enumerate(arch.banks):
        for name in bank:
            if name == "trace" and arch.memories.trace == 0:
                raise UserError(f"{source}: key 'banks[{number}]': memory 'trace' is empty (memories.trace = 0) "
                                f"and cannot share a bank")
    return arch


def _check_memory_sizes(arch: ArchConfig, source: str) -> None:
    """Refuse up front a core whose words or memories are too large to generate or simulate here."""
    from spikecore.accel.contract.layouts import physical_memories

    memories = physical_memories(arch)
    for memory in memories:
        if memory.width > MAX_WORD_BITS:
            raise UserError(f"{source}: memory '{memory.name}' would have {memory.width}-bit words, more than the "
                            f"{MAX_WORD_BITS} one signal may have: fewer lanes, levels or narrower widths")
    total = sum(memory.width * memory.depth for memory in memories)
    if total > MAX_MEMORY_BITS:
        raise UserError(f"{source}: the memories hold {total / 2 ** 20:,.0f} Mbit in all, more than the "
                        f"{MAX_MEMORY_BITS // 2 ** 20:,} Mbit a core may have here (no FPGA holds a tenth of it)")


def _name(value, source: str) -> str:
    """The configuration's name: it reaches file names, reports and generated files, so only a plain word."""
    if isinstance(value, bool) or not isinstance(value, (str, int)) or not NAME_PATTERN.fullmatch(str(value)):
        shown = value if isinstance(value, (str, int)) and not isinstance(value, bool) else type(value).__name__
        raise UserError(f"{source}: key 'name' = {str(shown)[:40]!r} must be 1 to 64 letters, digits and "
                        f"'_', '.', '+', '-', starting with a letter or digit")
    return str(value)


def _banks(value, source: str) -> tuple:
    """Validate ``banks``: lists of at least two distinct memory names, each memory in at most one bank, and
    no two memories of a bank in one of :data:`BANK_CONFLICTS`."""
    if not isinstance(value, list):
        raise UserError(f"{source}: key 'banks' must be a list of lists of memory names")
    seen = {}
    banks = []
    for number, bank in enumerate(value):
        where = f"banks[{number}]"
        if not isinstance(bank, list) or len(bank) < 2 or not all(isinstance(name, str) for name in bank):
            raise UserError(f"{source}: key '{where}' must be a list of at least two memory names")
        for name in bank:
            if name not in MEMORY_NAMES:
                raise UserError(f"{source}: key '{where}': unknown memory '{name}'{suggest(name, MEMORY_NAMES)}; "
                                f"memories: {', '.join(MEMORY_NAMES)}")
            if name in seen:
                raise UserError(f"{source}: key '{where}': memory '{name}' is already in banks[{seen[name]}]")
            seen[name] = number
        for members, reason in BANK_CONFLICTS:
            clash = [name for name in bank if name in members]
            if len(clash) > 1:
                raise UserError(f"{source}: key '{where}': '{clash[0]}' and '{clash[1]}' cannot share a single-port "
                                f"bank: they are {reason}")
        banks.append(tuple(bank))
    return tuple(banks)


def load_arch(path=None) -> ArchConfig:
    """Load and validate an architecture YAML file; ``None`` gives the embedded default."""
    if path is None:
        return default_arch()
    path = Path(path)
    data = load_yaml(path, "architecture file")
    return arch_from_dict(data, str(path))


def default_arch_path() -> Path:
    return Path(str(resources.files("spikecore.accel") / "data" / "default_arch.yaml"))


def default_arch() -> ArchConfig:
    """The embedded default configuration (sized for the digits network)."""
    return load_arch(default_arch_path())


def arch_to_yaml(arch: ArchConfig) -> str:
    return yaml.safe_dump(arch.to_dict(), sort_keys=False)
