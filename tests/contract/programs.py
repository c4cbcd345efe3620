"""The programs x architectures the contract suite runs, and the images it runs them on: 60 test images of the
digits and method networks, 3 or 4 random images of the others (the RTL adapters run fewer: ``test_contract.py``).

Programs (every construct kind the core runs: MLF neurons K = 1..4 with leaks 0..2, strided and 1x1
convolutions, two-source stages, membrane shortcuts (carry), sum joins and pooling, logic gates, the
linear readout):

- ``digits``: the shipped digits checkpoint (MLF K = 3, T = 4, two conv layers and a linear readout);
- ``constructs-s5``, ``-s6``, ``-s9``: random construct programs (``generators.random_stages``: 5x5 input,
  7 stages, 4 lanes, T = 3; seeds whose every stage fires); together they cover neuron, sum, gate, carry and
  readout (:data:`CONSTRUCT_KINDS`, asserted by ``test_programs.py``);
- ``method-NAME``: every method of the seed papers (``accel demo --list-methods``: MLF K = 1..4, spiking
  ResNet, DS-ResNet, MS-ResNet, SEW joins, LSN, DST FSNN/DSNN) with seeded random weights and normalisation
  calibrated on 200 training images (``spikecore.accel.flows.methods.build_untrained``: the core does not
  care how weights were learned, and this keeps CI free of training), on the methods core
  (``accel/data/methods_arch.yaml``);
- ``digitsnet-s11``, ``digitsnet-s12``: random ``DigitsNet`` networks (``generators.random_network``; s11:
  MLF K = 1, T = 3, channels 3 and 5; s12: K = 4, T = 2, channels 9 and 2; 8x8 images);
- ``vggm-s13``: a random VGG with a max pool (``generators.random_built_network``: ``layers [4, M, 6]``, IF
  neurons, T = 3, 8x8 digits): the pool of binary spikes runs as a gate (their OR);
- ``vggmax-s15``: a random VGG ``layers [M, 4, M, 6]`` of MLF neurons (K = 3), T = 3: max pools of the pixels
  and of spike counts, ``max`` stages, on the cores with comparators (``max-pool``, ``max-pool-lm``);
- on the ``narrow`` architecture (12-bit accumulators and membranes), ``constructs-s9`` with its "never fires"
  thresholds lowered to fit and one more stage, an *integrator* (:func:`construct_layers`): two IF channels
  (K = 2) of +-12 times each pixel plus a bias of +-(2^11 / 3 - 96), whose first level fires (channel 0) and
  whose second never fires, so its membrane saturates at the third timestep wherever the pixel exceeds 8: a
  different number of times in each image, in both directions (the only case that saturates).

Architectures:

- for the digits network: ``default`` (the shipped UP5K core: one single-port bank, one neuron per update
  step), ``layer-major`` (``examples/arch_layer_major.yaml``: banked, time-batched schedule), ``bitserial``
  (the default with ``multivalue: bitserial``), ``lane-parallel`` (the default with every lane updated at
  once and no bank), ``layer-major-t5`` (layer-major, bit-serial, every lane at once, no bank, and
  ``max_timesteps: 5``: 8 timestep slots for T = 4), whose RTL runs load the program and read the results over
  the host bus (``Case.host_bus``) instead of the simulator's backdoor; for the VGGs with max pools of
  multi-valued events ``max-pool`` (the default with ``max_pool: true``: comparators in the AC lanes) and
  ``max-pool-lm`` (``layer-major-t5`` with ``max_pool: true``);
  ``event-input`` (the default with ``event_input: true`` and room for every pixel of every timestep: the
  digits images as the same frame each timestep);
- for the construct programs (``generators.fuzz_arch``, 4 lanes): ``lane-parallel`` (its own: no bank,
  every lane at once), ``bitserial``, ``layer-major``, ``banked`` (one neuron per update step, one bank as
  the default core's), ``narrow`` (its own with 12-bit accumulators and membranes), ``event-input`` (one
  neuron per update step, ``event_input: true``: each image a different sparse frame per timestep,
  :func:`random_frames`).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .generators import PIXEL_MAX, fuzz_arch, random_built_network, random_network, random_stages

ROOT = Path(__file__).resolve().parents[2]
#: Construct kinds the construct programs must cover between them.
CONSTRUCT_KINDS = {"neuron", "sum", "gate", "carry", "readout", "max"}
CONSTRUCT_SEEDS = (5, 6, 9)
CONSTRUCT_SIZE, CONSTRUCT_STAGES, CONSTRUCT_LANES, CONSTRUCT_T = 5, 7, 4, 3
DEFAULT_BANK = ("pointers", "synapses", "weights", "state", "trace", "inputs")
NARROW_BITS = 12
#: Test images of the digits network and of the methods' networks (the simulator-side implementations run all).
DIGITS_IMAGES, METHOD_IMAGES = 60, 60
#: Random ``DigitsNet`` programs: seed -> (channels, levels K, timesteps, image size).
DIGITSNET_SEEDS = {11: ((3, 5), 1, 3, 8), 12: ((9, 2), 4, 2, 8)}
#: Networks of ``build_network`` with random weights on 8x8 digits: program -> (seed, configuration, architectures).
BUILT_NETWORKS = {
    "vggm-s13": (13, {"arch": "vgg", "layers": [4, "M", 6], "image_size": 8, "in_channels": 1, "timesteps": 3,
                      "neuron": {"type": "if"}}, ("default",)),
    "vggmax-s15": (15, {"arch": "vgg", "layers": ["M", 4, "M", 6], "image_size": 8, "in_channels": 1,
                        "timesteps": 3}, ("max-pool", "max-pool-lm")),
}


@dataclass(frozen=True)
class Case:
    """One program on one architecture, and how many images the simulator-side implementations run."""

    program: str
    arch: str
    images: int
    host_bus: bool = False      # the RTL loads and reads over the host bus, not the backdoor

    @property
    def id(self) -> str:
        return f"{self.program}@{self.arch}"


def _cases():
    cases = [Case("digits", arch, DIGITS_IMAGES, host_bus=arch == "layer-major-t5")
             for arch in ("default", "layer-major", "bitserial", "lane-parallel", "layer-major-t5")]
    cases += [Case(f"constructs-s{seed}", arch, 3) for seed in CONSTRUCT_SEEDS
              for arch in ("lane-parallel", "bitserial", "layer-major", "banked", "event-input")]
    cases += [Case("digits", "event-input", 8)]
    cases += [Case(f"digitsnet-s{seed}", "default", 4) for seed in DIGITSNET_SEEDS]
    cases += [Case("constructs-s9", "narrow", 4)]
    cases += [Case(name, arch, 4) for name, (_, _, archs) in BUILT_NETWORKS.items() for arch in archs]
    cases += [Case(f"method-{name}", "methods", METHOD_IMAGES) for name in _method_names()]
    return {case.id: case for case in cases}


def _method_names():
    from spikecore.accel.flows.methods import METHODS

    return list(METHODS)


#: Every case, by id ("program@arch").
CASES = _cases()


# ---- architectures ------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def digits_arch(name: str):
    from spikecore.accel.contract.config import default_arch, load_arch

    base = default_arch()
    if name == "default":
        return base
    if name == "layer-major":
        return load_arch(ROOT / "examples" / "arch_layer_major.yaml")
    if name == "bitserial":
        return dataclasses.replace(base, name="digits-bitserial", multivalue="bitserial")
    if name == "lane-parallel":
        return dataclasses.replace(base, name="digits-lane-parallel", update_lanes=0, banks=())
    if name == "layer-major-t5":
        return dataclasses.replace(base, name="digits-layer-major-t5", schedule="layer_major", max_timesteps=5,
                                   update_lanes=0, banks=(), multivalue="bitserial")
    if name == "max-pool":
        return dataclasses.replace(base, name="digits-max-pool", max_pool=True)
    if name == "max-pool-lm":
        return dataclasses.replace(digits_arch("layer-major-t5"), name="digits-max-pool-lm", max_pool=True)
    if name == "event-input":  # the inputs memory holds T x 64 words: every pixel of every timestep
        return dataclasses.replace(base, name="digits-event-input", event_input=True,
                                   memories=dataclasses.replace(base.memories, inputs=256))
    raise KeyError(name)


@functools.lru_cache(maxsize=None)
def construct_arch(name: str):
    base = fuzz_arch(CONSTRUCT_LANES)
    if name == "lane-parallel":
        return base
    if name == "bitserial":
        return fuzz_arch(CONSTRUCT_LANES, multivalue="bitserial")
    if name == "layer-major":
        return fuzz_arch(CONSTRUCT_LANES, schedule="layer_major")
    if name == "banked":
        return dataclasses.replace(base, name="fuzz-banked", update_lanes=1, banks=(DEFAULT_BANK,))
    if name == "narrow":
        return dataclasses.replace(base, name="fuzz-narrow", acc_bits=NARROW_BITS, membrane_bits=NARROW_BITS)
    if name == "event-input":
        return dataclasses.replace(base, name="fuzz-event-input", event_input=True, update_lanes=1)
    raise KeyError(name)


# ---- programs -----------------------------------------------------------------------------------------------
def construct_layers(seed: int, membrane_bits: int | None = None):
    """``random_stages`` of the suite's size; with ``membrane_bits``, every threshold capped to fit it and an
    integrator stage (module docstring) inserted before the readout, whose membranes saturate."""
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    layers, kinds = random_stages(seed, CONSTRUCT_SIZE, CONSTRUCT_STAGES, CONSTRUCT_LANES)
    if membrane_bits is not None:
        top = (1 << (membrane_bits - 1)) - 1
        for layer in layers:
            layer.thresholds = np.minimum(layer.thresholds, top)
        weight = np.array([12, -12], np.int64).reshape(2, 1, 1, 1)
        bias = top // 3 - 12 * 8        # three timesteps of bias and a pixel above 8 pass the top
        shape = (1, CONSTRUCT_SIZE, CONSTRUCT_SIZE)
        layers.insert(len(layers) - 1, ProgramLayer(
            name="integrator", kind="neuron", sources=[ProgramSource(input=-1, op="conv", weight=weight,
                                                                     in_shape=shape)],
            out_shape=(2,) + shape[1:], bias=np.array([bias, -bias], np.int64),
            thresholds=np.array([[60, 60], [top, top]], np.int64), scale=np.ones(2), shift=0))
    return layers, kinds


@functools.lru_cache(maxsize=None)
def _digits_net():
    from spikecore.accel.contract.checkpoint import load_checkpoint, shipped_checkpoint_path

    return load_checkpoint(shipped_checkpoint_path())[0]


@functools.lru_cache(maxsize=None)
def _digits_split():
    from spikecore.models import load_digits_split

    return load_digits_split()


def _digits_images():
    return _digits_split()[2].reshape(-1, 64).numpy().astype(np.int64)


def random_images(seed: int, count: int, n_inputs: int, maximum: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, maximum + 1, size=(count, n_inputs)).astype(np.int64)


def random_frames(seed: int, count: int, program, maximum: int) -> np.ndarray:
    """Event frames int64 ``[count, T, n_inputs]``: a different sparse frame at each timestep (about a third of
    the values nonzero), the second timestep empty and the last one full."""
    rng = np.random.default_rng(seed)
    shape = (count, program.timesteps, program.n_inputs)
    frames = rng.integers(1, maximum + 1, size=shape) * (rng.random(shape) < 0.35)
    frames[:, 1] = 0
    frames[:, -1] = rng.integers(1, maximum + 1, size=(count, program.n_inputs))
    return frames.astype(np.int64)


@functools.lru_cache(maxsize=None)
def build(case_id: str):
    """``(program, arch, pixels, construct kinds)`` of a case: ``pixels`` int64 ``[images, n_inputs]``, or on an
    ``event_input`` core a construct program's frames ``[images, T, n_inputs]``."""
    from spikecore.accel.contract.compiler import compile_network, compile_stages

    case = CASES[case_id]
    shape = (1, CONSTRUCT_SIZE, CONSTRUCT_SIZE)
    if case.program == "digits":
        arch = digits_arch(case.arch)
        program = compile_network(_digits_net(), arch)
        pixels = _digits_images()[:case.images]
        kinds = {layer.kind for layer in program.layers}
    elif case.program.startswith("constructs-s"):
        seed = int(case.program.rsplit("s", 1)[1])
        arch = construct_arch(case.arch)
        layers, kinds = construct_layers(seed, arch.membrane_bits if case.arch == "narrow" else None)
        program = compile_stages(layers, arch, CONSTRUCT_T, shape, PIXEL_MAX)
        pixels = random_images(seed, case.images, program.n_inputs, PIXEL_MAX)
        if arch.event_input:
            pixels = random_frames(seed, case.images, program, PIXEL_MAX)
    elif case.program.startswith("digitsnet-s"):
        seed = int(case.program.rsplit("s", 1)[1])
        arch = digits_arch(case.arch)
        program = compile_network(random_network(seed, *DIGITSNET_SEEDS[seed]), arch)
        pixels = random_images(seed, case.images, program.n_inputs, 16)
        kinds = {layer.kind for layer in program.layers}
    elif case.program in BUILT_NETWORKS:
        from spikecore.models.digits import DIGITS_MAX_PIXEL

        seed, config, _ = BUILT_NETWORKS[case.program]
        arch = digits_arch(case.arch)
        net = random_built_network(seed, config, _digits_split()[0][:200], DIGITS_MAX_PIXEL)
        program = compile_network(net, arch)
        pixels = _digits_images()[:case.images]
        kinds = {layer.kind for layer in program.layers}
    elif case.program.startswith("method-"):
        from spikecore.accel.contract.config import load_arch
        from spikecore.accel.flows.methods import build_untrained, methods_arch_path

        arch = load_arch(methods_arch_path())
        net = build_untrained(case.program[len("method-"):], seed=1, calibration=_digits_split()[0][:200])
        program = compile_network(net, arch)
        pixels = _digits_images()[:case.images]
        kinds = {layer.kind for layer in program.layers} | ({"carry"} if any(
            layer.carry is not None for layer in program.layers) else set())
    else:
        raise KeyError(case_id)
    return program, arch, pixels, frozenset(kinds)
