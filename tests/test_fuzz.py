"""Property-based fuzzing (hypothesis), derandomized so every CI run draws the same examples; a failure
prints the example and hypothesis's reproduction blob (``print_blob``), so it reproduces exactly.

- configurations: a valid one compiles and simulates bit-exact with the golden model; an invalid one is
  rejected with a one-line :class:`UserError` naming the key, never another exception;
- programs: random small networks (channels, levels K, timesteps, image size, lanes, widths, banks, schedules)
  and random inputs, run through the contract suite's checks (``contract.suite.problems``) on the golden model
  and both simulator engines: every event, logit and saturation count equal to the golden model's, membranes,
  cycles and accounts equal between the engines, cycles that follow the schedule. The RTL runs the suite's
  fixed random networks (``digitsnet-s11``, ``digitsnet-s12``).
"""
import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from contract.generators import random_network
from contract.suite import REFERENCES, Subject, problems
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict
from spikecore.errors import UserError

FUZZ = settings(derandomize=True, deadline=None, print_blob=True, max_examples=30,
                suppress_health_check=[HealthCheck.too_slow])

KEYS = ["lanes", "weight_bits", "acc_bits", "membrane_bits", "input_bits", "max_levels", "max_timesteps",
        "multivalue", "clock_mhz", "memories", "lanez", "name", "update_lanes", "banks", "schedule"]
any_bank = st.lists(st.sampled_from(["layers", "pointers", "synapses", "weights", "params", "inputs", "acc", "state",
                                     "events", "trace", "stat"]), max_size=4)
any_value = st.one_of(st.integers(-4, 300), st.sampled_from(["repeat", "bitserial", "x", None, True, "layer_major",
                                                             "timestep_major"]),
                      st.lists(any_bank, max_size=2),
                      st.floats(-5, 100, allow_nan=False), st.dictionaries(st.sampled_from(
                          ["state", "synapses", "events", "trace", "bogus"]), st.integers(-1, 1 << 15), max_size=3))
#: The implementations a drawn program runs on (the RTL runs the suite's fixed cases).
SIMULATOR_SIDE = (REFERENCES["golden"], REFERENCES["dense"], REFERENCES["tables"])


def check_golden_equals_sim(net, arch, seed: int, samples: int = 3) -> None:
    """The contract suite's checks (every compared field against its reference, self-consistency, the schedule)
    on the golden model and both engines, for ``net`` compiled on ``arch`` and random images."""
    program = compile_network(net, arch)
    pixels = np.random.default_rng(seed).integers(0, 17, size=(samples, program.n_inputs))
    found = problems(Subject.drawn(program, arch, pixels), SIMULATOR_SIDE)
    assert found == [], "\n".join(found[:5])


@FUZZ
@given(st.dictionaries(st.sampled_from(KEYS), any_value, max_size=4))
def test_configurations_are_accepted_or_rejected_cleanly(data):
    try:
        arch = arch_from_dict(data, "fuzz.yaml")
    except UserError as exc:
        message = str(exc)
        assert message.startswith("fuzz.yaml: ") and "\n" not in message
        return
    net = random_network(0, (4, 8), min(3, arch.max_levels), min(2, arch.max_timesteps), 8)
    try:
        check_golden_equals_sim(net, arch, 0, samples=1)
    except UserError as exc:  # a valid configuration may still be too small for this network
        assert "\n" not in str(exc) and ("layer" in str(exc) or "program" in str(exc))


@FUZZ
@given(seed=st.integers(0, 2**16), c0=st.integers(1, 9), c1=st.integers(1, 9), levels=st.integers(1, 4),
       timesteps=st.integers(1, 4), image_size=st.integers(3, 8), lanes=st.sampled_from([1, 2, 4, 8, 16]),
       weight_bits=st.integers(3, 10), membrane_bits=st.integers(20, 28), update_lanes=st.sampled_from([0, 1, 2]),
       banked=st.booleans(), schedule=st.sampled_from(["timestep_major", "layer_major"]))
def test_random_programs_golden_equals_simulator(seed, c0, c1, levels, timesteps, image_size, lanes, weight_bits,
                                                 membrane_bits, update_lanes, banked, schedule):
    # memories large enough for the largest drawn network with one lane; widths that hold the accumulator bound
    memories = {"state": 2048, "pointers": 4096, "synapses": 1 << 16, "weights": 4096, "events": 4096}
    arch = arch_from_dict({"lanes": lanes, "weight_bits": weight_bits, "acc_bits": membrane_bits,
                           "membrane_bits": membrane_bits, "max_levels": 4, "memories": memories,
                           "update_lanes": min(update_lanes, lanes), "schedule": schedule, "max_timesteps": 4,
                           "banks": [["pointers", "synapses", "state"]] if banked else []})
    net = random_network(seed, (c0, c1), levels, timesteps, image_size)
    check_golden_equals_sim(net, arch, seed)
