"""The contract suite (``suite.ContractSuite``) on each implementation: the golden model, the simulator's dense
and tables engines, and the generated Verilog under Icarus and Verilator.

The golden model and the engines run every case of the default run (``programs.DEFAULT_CASES``: the digits
network on four architectures, three construct programs on four, a random DigitsNet, a saturating construct
program, five methods of the seed papers), and the other ten methods under ``-m slow``. The RTL runs a
bounded subset in the default run, about a minute each on two cores: Icarus (about 12 s an image of the
digits network, a build of a few seconds per configuration) one digits image on the default core, two
images of the random DigitsNet on it, and two images of a construct program on each of the other construct
architectures; Verilator (a build of about half a minute per configuration, cached for the session, then
fast) the three construct programs on one configuration. Every other case runs under ``-m slow`` (Icarus
leaves the ten slow methods to Verilator).
"""
from spikecore.accel.flows.methods import METHODS

from .implementations import Icarus, Verilator
from .programs import CASES, DEFAULT_CASES
from .suite import REFERENCES, ContractSuite

ICARUS_CASES = ("digits@default", "digitsnet-s12@default", "constructs-s5@bitserial", "constructs-s6@layer-major",
                "constructs-s9@banked", "constructs-s9@narrow")
VERILATOR_CASES = ("constructs-s5@lane-parallel", "constructs-s6@lane-parallel", "constructs-s9@lane-parallel")
#: Images per program on the RTL.
RTL_IMAGES = {"digits": 1, "digitsnet-s12": 2, "constructs-s5": 2, "constructs-s6": 2, "constructs-s9": 2,
              **{f"method-{name}": 2 for name in METHODS}}


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
    slow_cases = tuple(case for case in CASES if case not in ICARUS_CASES
                       and (not CASES[case].program.startswith("method-") or case in DEFAULT_CASES))
    images = RTL_IMAGES


class TestVerilator(ContractSuite):
    implementation = Verilator()
    cases = VERILATOR_CASES
    slow_cases = tuple(case for case in CASES if case not in VERILATOR_CASES)
    images = RTL_IMAGES

