"""The contract suite (``suite.ContractSuite``) on each implementation: the golden model, the simulator's dense
and tables engines, and the generated Verilog under Icarus and Verilator.

The golden model and the engines run every case (``programs.CASES``). The RTL runs a bounded subset in the
default run and every other case under ``-m slow``. Icarus (about 12 s an image of the digits network, a build of
a few seconds per configuration): 4 digits images on the default core, 2 on the layer-major core, and two images
of the random DigitsNets, of the VGG with a max pool and of a construct program on each of the other construct
architectures (the event-input core's included: a different frame each timestep). Verilator (a build of about half a minute per configuration, cached for the session, then fast):
3 digits images on the default core and 2 on the layer-major, bit-serial, lane-parallel core with 8 timestep
slots (over the host bus), 2 of the VGG with a max pool of spikes, the three construct programs in both
multi-value modes and both schedules, two of them on the event-input core, and every method of the seed papers. The VGG with max stages needs a core
with comparators (``max_pool``), a build of its own: Icarus runs it in the default run, Verilator (and Icarus on
the layer-major core with comparators) under ``-m slow``.
Icarus leaves ten methods to Verilator even under ``-m slow`` (minutes a case on the residual networks).
"""
from .implementations import Icarus, Verilator
from .programs import CASES
from .suite import REFERENCES, ContractSuite

ICARUS_CASES = ("digits@default", "digits@layer-major", "digitsnet-s11@default", "digitsnet-s12@default",
                "constructs-s5@bitserial", "constructs-s6@layer-major", "constructs-s9@banked", "constructs-s9@narrow",
                "vggm-s13@default", "vggmax-s15@max-pool", "constructs-s9@event-input")
#: The methods Icarus runs under ``-m slow``: a membrane shortcut, a sum join, a gate join, the LSN's gates, the
#: DST's auxiliary accumulation pathway.
ICARUS_METHODS = ("ms-resnet", "ds-resnet", "sew-iand", "lsn", "dst-dsnn")
VERILATOR_CASES = ("digits@default", "digits@layer-major-t5", "vggm-s13@default", "constructs-s5@event-input",
                   "constructs-s6@event-input",
                   *(f"constructs-s{seed}@{arch}" for seed in (5, 6, 9)
                     for arch in ("lane-parallel", "bitserial", "layer-major")),
                   *(case for case in CASES if case.startswith("method-")))
#: Images on the RTL, by case id or program.
ICARUS_IMAGES = {"digits@default": 4, "digits": 2, "digitsnet-s11": 2, "digitsnet-s12": 2, "constructs-s5": 2,
                 "constructs-s6": 2, "constructs-s9": 2, "vggm-s13": 2, "vggmax-s15": 2,
                 **{case: 2 for case in CASES if case.startswith("method-")}}
VERILATOR_IMAGES = {**ICARUS_IMAGES, "digits@default": 3}


# the references' own instances: their outcomes are computed once, for their tests and as references
class TestGolden(ContractSuite):
    implementation = REFERENCES["golden"]


class TestDenseEngine(ContractSuite):
    implementation = REFERENCES["dense"]


class TestTablesEngine(ContractSuite):
    implementation = REFERENCES["tables"]


class TestIcarus(ContractSuite):
    implementation = Icarus()
    cases = ICARUS_CASES
    slow_cases = tuple(case for case in CASES if case not in ICARUS_CASES and (
        not case.startswith("method-") or case.split("@")[0][len("method-"):] in ICARUS_METHODS))
    images = ICARUS_IMAGES


class TestVerilator(ContractSuite):
    implementation = Verilator()
    cases = VERILATOR_CASES
    slow_cases = tuple(case for case in CASES if case not in VERILATOR_CASES)
    images = VERILATOR_IMAGES
