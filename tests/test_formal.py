"""Formal proofs of the RTL with SymbiYosys (``docs/formal.md``, ``rtl/formal.py``).

Every proof must pass on the design and fail on a planted error: each planted-error test rewrites one line
of ``rtl/components.py``, ``rtl/core.py`` or ``rtl/controller.py`` (in a copy of the module, the files are
untouched) and expects a counterexample.
"""
import inspect
import types
from pathlib import Path

import pytest

import spikecore.accel
import spikecore.rtl.components
import spikecore.rtl.controller
import spikecore.rtl.core
import spikecore.rtl.formal
from spikecore.accel.contract.config import arch_from_dict, default_arch, load_arch
from spikecore.accel.contract.layouts import KIND_GATE, KIND_NEURON, KIND_SUM
from spikecore.rtl.formal import (AcArrayEquivalence, CoreProtocol, FormalToolMissing, NeuronUpdateEquivalence,
                        RegisteredNeuronUpdateEquivalence, SaturationEquivalence, run_proof)


def variant(arch, **changes):
    """``arch`` with ``changes``, validated as a configuration file would be."""
    return arch_from_dict({**arch.to_dict(), **changes}, "<formal test variant>")


DEFAULT = default_arch()
ARCHS = {
    "default": DEFAULT,
    "methods": load_arch(Path(spikecore.accel.__file__).parent / "data" / "methods_arch.yaml"),
    # the AC array's shifter exists only in the bit-serial mode
    "bitserial": variant(DEFAULT, name="formal-bitserial", multivalue="bitserial"),
    # a second banked core: the layer-major schedule has its own states (ARD) and port timing
    "layer_major": variant(DEFAULT, name="formal-layer-major", schedule="layer_major"),
    # the AC array's comparators (a max stage's accumulation) exist only with max_pool
    "max_pool": variant(DEFAULT, name="formal-max-pool", max_pool=True),
    # the default's split update (one neuron per step, registered unit) at 6-bit words: the staging is the
    # same at every width, and the solver matches two instances of the unit only at small widths
    "split_update_6bit": variant(DEFAULT, name="formal-split-6bit", weight_bits=6, acc_bits=6, membrane_bits=6),
}
KINDS = {"neuron": KIND_NEURON, "sum": KIND_SUM, "gate": KIND_GATE}


def prove(tmp_path, wrapper, name):
    return run_proof(wrapper, tmp_path, name, timeout=300)


def assert_proven(result):
    assert result.status == "PASS", f"{result.name}: {result.status} {result.failed}\n{result.log}"


def assert_refuted(result):
    assert result.status == "FAIL" and result.failed, \
        f"{result.name}: a planted error was not caught ({result.status})\n{result.log}"


def module_copy(module, source: str):
    """A new module run from ``source`` in the package of ``module``."""
    copy = types.ModuleType(f"{module.__name__}_mutant")
    copy.__package__ = module.__package__
    exec(compile(source, module.__file__, "exec"), vars(copy))
    return copy


def mutant(module, original: str, replacement: str):
    """A copy of ``module`` whose source has ``original`` (which must occur once) replaced."""
    source = inspect.getsource(module)
    assert source.count(original) == 1, f"{original!r} must occur exactly once in {module.__name__}"
    return module_copy(module, source.replace(original, replacement))


def mutant_core(module, original: str, replacement: str):
    """The ``Core`` of a copy of ``rtl/core.py`` built from a copy of ``module`` (``rtl/core.py`` itself or a module
    it imports from) with ``original`` replaced."""
    mutated = mutant(module, original, replacement)
    if module is spikecore.rtl.core:
        return mutated.Core
    core = module_copy(spikecore.rtl.core, inspect.getsource(spikecore.rtl.core))
    for name, value in list(vars(core).items()):
        if getattr(module, name, None) is value:  # imported from the mutated module: take the mutant's
            setattr(core, name, getattr(mutated, name))
    return core.Core


# ---- the design satisfies every property ------------------------------------------------------------
def saturation_cases():
    widths = sorted({(arch.acc_bits, arch.membrane_bits) for arch in ARCHS.values()})
    bits = sorted({b for pair in widths for b in pair})
    # the units clamp sums one bit (AC array, repeat mode) or two bits (neuron update) wider than the result
    return [(b, b + extra) for b in bits for extra in (1, 2)]


@pytest.mark.parametrize("bits, value_bits", saturation_cases())
def test_saturate_is_sat(tmp_path, bits, value_bits):
    assert_proven(prove(tmp_path, SaturationEquivalence(bits, value_bits), f"saturate_{bits}_{value_bits}"))


@pytest.mark.parametrize("arch_name", ["default", "methods", "bitserial", "max_pool"])
def test_ac_array_is_reference(tmp_path, arch_name):
    assert_proven(prove(tmp_path, AcArrayEquivalence(ARCHS[arch_name]), f"ac_array_{arch_name}"))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("arch_name", ["default", pytest.param("methods", marks=pytest.mark.slow)])
def test_neuron_update_is_reference(tmp_path, arch_name, kind):
    # the methods core's unit (8 lanes of four 20-bit levels) takes about 40 s a kind: `pytest -m slow`
    wrapper = NeuronUpdateEquivalence(ARCHS[arch_name], kinds=[KINDS[kind]])
    assert_proven(prove(tmp_path, wrapper, f"neuron_update_{arch_name}_{kind}"))


def test_registered_neuron_update_is_combinational_one_cycle_late(tmp_path):
    wrapper = RegisteredNeuronUpdateEquivalence(ARCHS["split_update_6bit"])
    assert_proven(prove(tmp_path, wrapper, "registered_neuron_update"))


CORE_PROOFS = [("default", prop) for prop in CoreProtocol.PROPERTIES] + [
    ("layer_major", "banks"),
    ("methods", "busy_done"), ("methods", "host_writes"), ("methods", "cycles"),
]


@pytest.mark.parametrize("arch_name, prop", CORE_PROOFS)
def test_core_property(tmp_path, arch_name, prop):
    wrapper = CoreProtocol(ARCHS[arch_name], [prop])
    assert_proven(prove(tmp_path, wrapper, f"core_{arch_name}_{prop}"))


# ---- a planted error makes each proof fail ---------------------------------------------------------
COMPONENT_MUTATIONS = {
    # sat_B: the upper clamp one below the limit
    "saturate_limit": ("Mux(exact[-1], lo, hi)", "Mux(exact[-1], lo, hi - 1)"),
    # a saturation event for every negative value that fits
    "saturate_flag": ("saturated.eq(upper.any() & ~upper.all())", "saturated.eq(upper.any())"),
    # AC array (repeat mode): weights zero-extended instead of sign-extended
    "ac_weight_sign": ("if self.max_shift else self.weight[lane]", "if self.max_shift else self.weight[lane].as_unsigned()"),
    # AC array (bit-serial mode): the weight shifted one bit too far
    "ac_shift": ("self.weight[lane] << self.shift if", "self.weight[lane] << (self.shift + 1) if"),
    # comparator bank: fires at v == theta (the contract's comparison is strict)
    "neuron_compare": ("value > self.threshold[lane][level]", "value >= self.threshold[lane][level]"),
    # leak: a logical instead of an arithmetic shift (no floor for negative membranes)
    "neuron_leak": ("(self.membrane[lane][level] >> self.shift)", "(self.membrane[lane][level].as_unsigned() >> self.shift)"),
    # levels above the stage's K keep their membranes instead of 0
    "neuron_inactive_levels": ("Mux(fired | ~active, 0, value)", "Mux(fired, 0, value)"),
    # the event count of the update drops one flag of an odd-sized tree
    "population_count": ("paired + ([bits[-1]] if len(bits) % 2 else [])", "paired"),
    # sum: clamped one below 2**V - 1
    "sum_limit": ("value_max = (1 << self.value_bits) - 1", "value_max = (1 << self.value_bits) - 2"),
    # gate: index clamped to 6 instead of 7
    "gate_index": ("upper = Mux(is_gate, 7, value_max)", "upper = Mux(is_gate, 6, value_max)"),
    # max stage: the comparator also takes the value on lanes whose weight is zero
    "ac_max_mask": ("larger = (self.weight[lane] != 0) & (self.value > acc_in)", "larger = self.value > acc_in"),
    # max stage: a comparison that saturates
    "ac_max_saturates": ("saturated = ~self.compare & saturated", "saturated = saturated"),
    # registered unit: sums and gates use the second cycle's current instead of the first's
    "registered_current": ('current = stage(sum_in, f"lane{lane}_current")', "current = sum_in"),
}

COMPONENT_PROOFS = {
    "saturate_limit": lambda unit: SaturationEquivalence(16, 17, saturate_function=unit.saturate),
    "saturate_flag": lambda unit: SaturationEquivalence(16, 18, saturate_function=unit.saturate),
    "ac_weight_sign": lambda unit: AcArrayEquivalence(ARCHS["default"], unit_class=unit.AcArray),
    "ac_shift": lambda unit: AcArrayEquivalence(ARCHS["bitserial"], unit_class=unit.AcArray),
    "ac_max_mask": lambda unit: AcArrayEquivalence(ARCHS["max_pool"], unit_class=unit.AcArray),
    "ac_max_saturates": lambda unit: AcArrayEquivalence(ARCHS["max_pool"], unit_class=unit.AcArray),
    "neuron_compare": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_NEURON], unit.NeuronUpdate),
    "neuron_leak": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_NEURON], unit.NeuronUpdate),
    "neuron_inactive_levels": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_NEURON], unit.NeuronUpdate),
    "population_count": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_SUM], unit.NeuronUpdate),
    "sum_limit": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_SUM], unit.NeuronUpdate),
    "gate_index": lambda unit: NeuronUpdateEquivalence(ARCHS["default"], [KIND_GATE], unit.NeuronUpdate),
    "registered_current": lambda unit: RegisteredNeuronUpdateEquivalence(ARCHS["split_update_6bit"], unit.NeuronUpdate),
}


@pytest.mark.parametrize("mutation", COMPONENT_MUTATIONS)
def test_planted_component_error_is_caught(tmp_path, mutation):
    unit = mutant(spikecore.rtl.components, *COMPONENT_MUTATIONS[mutation])
    assert_refuted(prove(tmp_path, COMPONENT_PROOFS[mutation](unit), f"planted_{mutation}"))


CORE_MUTATIONS = {
    # the host may read and write in one cycle: two ports of one bank member at once
    "banks": (spikecore.rtl.core, "read[name].en.eq(idle & (core.host_sel == select) & ~core.host_we)",
              "read[name].en.eq(idle & (core.host_sel == select))"),
    # start does not clear done: busy and done high together
    "busy_done": (spikecore.rtl.controller, 'self.done.eq(0), registers["cycles"].eq(0)', 'registers["cycles"].eq(0)'),
    # a control register stores the written value shifted
    "host_writes": (spikecore.rtl.core, "m.d.sync += registers[name].eq(core.host_wdata)",
                    "m.d.sync += registers[name].eq(core.host_wdata[1:])"),
    # the cycle count starts from 1
    "cycles": (spikecore.rtl.controller, 'registers["cycles"].eq(0), registers["trace_count"].eq(0)',
               'registers["cycles"].eq(1), registers["trace_count"].eq(0)'),
}


@pytest.mark.parametrize("prop", CORE_MUTATIONS)
def test_planted_core_error_is_caught(tmp_path, prop):
    wrapper = CoreProtocol(DEFAULT, [prop], core_class=mutant_core(*CORE_MUTATIONS[prop]))
    assert_refuted(prove(tmp_path, wrapper, f"planted_core_{prop}"))


# ---- the runner -----------------------------------------------------------------------------------------
def test_missing_tools_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(FormalToolMissing, match="yowasp-sby.*scripts/install.sh"):
        run_proof(SaturationEquivalence(8, 9), tmp_path, "unreachable")


def test_unknown_core_property_is_refused():
    with pytest.raises(ValueError, match="unknown core properties"):
        CoreProtocol(DEFAULT, ["bankz"])


def test_probes_match_the_core():
    """A probe of a signal the core no longer has is an error, never a vacuous proof."""
    with pytest.raises(ValueError, match="no signal 'n_layers'"):
        spikecore.rtl.formal.core_wire_width("module \\top.core\nend\n", "n_layers")
