"""Random programs and architectures for the contract suite and the fuzz tests.

- :func:`random_network`: a random ``DigitsNet`` (channels, MLF levels K, timesteps, image size) with random
  normalisation statistics, so that every layer is active;
- :func:`random_stages`: a random integer stage graph mixing every construct the core runs (neurons with K = 1..4,
  leaks 0..2 and per-channel thresholds fed by 3x3/1x1/strided convolutions of the pixels or of earlier stages,
  one or two sources; membrane shortcuts (carry); sum joins and sum pooling; logic gates over two or three binary
  stages with a random truth table; a linear readout), on :func:`fuzz_arch`, compiled by :func:`compile_random`;
- :func:`random_built_network`: a network of ``spikecore.models.networks.build_network`` (a VGG with max pools, a
  SEW 7B-Net) with seeded random weights and its normalisation statistics taken from calibration images.
"""
from __future__ import annotations

import numpy as np
import torch

from spikecore.accel.contract.compiler import compile_stages
from spikecore.accel.contract.config import arch_from_dict
from spikecore.accel.contract.lowering import output_shape
from spikecore.accel.contract.program import ProgramLayer, ProgramSource
from spikecore.models import DigitsNet

PIXEL_MAX = 15
MEMORIES = {"layers": 64, "pointers": 8192, "synapses": 1 << 16, "weights": 8192, "params": 256, "state": 2048,
            "events": 1024, "inputs": 64, "trace": 16384}


def fuzz_arch(lanes: int = 4, multivalue: str = "repeat", schedule: str = "timestep_major"):
    return arch_from_dict({"name": "fuzz", "lanes": lanes, "weight_bits": 6, "acc_bits": 18, "membrane_bits": 18,
                           "input_bits": 8, "max_levels": 4, "max_timesteps": 4, "event_regions": 8,
                           "multivalue": multivalue, "schedule": schedule, "memories": MEMORIES})


def random_stages(seed: int, size: int, n_stages: int, lanes: int):
    """A random valid stage list on a ``1 x size x size`` input; returns ``(layers, kinds used)``."""
    rng = np.random.default_rng(seed)
    layers = []   # ProgramLayer, memory layout filled in by compile_stages
    carried = set()

    def shape(i):
        return (1, size, size) if i < 0 else layers[i].out_shape

    def neuron_params(channels):
        levels = 1 if rng.random() < 0.5 else int(rng.integers(2, 5))  # K = 1 often: gates need binary inputs
        base = rng.integers(4, 40, channels)
        thresholds = np.stack([base + 20 * k for k in range(levels)]).astype(np.int64)
        return levels, thresholds

    def conv_source(i, channels, kernel, stride):
        c_in = shape(i)[0]
        w = rng.integers(-12, 13, (channels, c_in, kernel, kernel)).astype(np.int64)
        return ProgramSource(input=i, op="conv", weight=w, in_shape=shape(i), stride=stride, padding=kernel // 2)

    def identity_source(i, weight):
        c = shape(i)[0]
        w = np.zeros((c, c, 1, 1), np.int64)
        w[np.arange(c), np.arange(c)] = weight
        return ProgramSource(input=i, op="conv", weight=w, in_shape=shape(i))

    def add(name, kind, sources, out_shape, thresholds=None, **kw):
        channels = out_shape[0]
        if thresholds is None:
            thresholds = np.full((1, channels), (1 << 17) - 1, np.int64)
        bias = rng.integers(-6, 7, channels) if kind == "neuron" else np.zeros(channels, np.int64)
        layers.append(ProgramLayer(name=name, kind=kind, sources=sources, out_shape=tuple(out_shape),
                                   bias=bias.astype(np.int64), thresholds=thresholds,
                                   scale=np.ones(channels), **kw))
        return len(layers) - 1

    def binary(i):
        return layers[i].kind == "gate" or (layers[i].kind == "neuron" and layers[i].levels == 1)

    channels = int(rng.integers(1, 2 * lanes + 1))
    levels, th = neuron_params(channels)
    stem = conv_source(-1, channels, 3, 1)
    add("stem", "neuron", [stem], output_shape(shape(-1), stem), th[:1] if rng.random() < 0.5 else th,
        shift=int(rng.integers(0, 3)))
    for n in range(n_stages):
        emitting = [i for i, layer in enumerate(layers) if layer.kind != "readout"]
        choice = rng.choice(["neuron", "neuron", "sum", "gate", "pool", "carry"])
        last = emitting[-1]
        same = [i for i in emitting if shape(i) == shape(last)]
        if choice == "sum" and len(same) >= 2:
            a, b = rng.choice(same, 2, replace=False)
            add(f"sum{n}", "sum", [identity_source(int(a), 1), identity_source(int(b), 1)], shape(last))
        elif choice == "gate" and len([i for i in same if binary(i)]) >= 2:
            inputs = [i for i in same if binary(i)]
            picked = rng.choice(inputs, min(len(inputs), int(rng.integers(2, 4))), replace=False)
            table = int(rng.integers(0, 128)) << 1  # bit 0 clear: no event without an input
            add(f"gate{n}", "gate", [identity_source(int(i), 1 << k) for k, i in enumerate(picked)], shape(last),
                truth_table=table)
        elif choice == "pool" and shape(last)[1] >= 2:
            c = shape(last)[0]
            w = np.zeros((c, c, 2, 2), np.int64)
            w[np.arange(c), np.arange(c)] = 1
            src = ProgramSource(input=last, op="conv", weight=w, in_shape=shape(last), stride=2)
            add(f"pool{n}", "sum", [src], (c, shape(last)[1] // 2, shape(last)[2] // 2))
        elif choice == "carry" and layers[last].kind == "neuron" and last not in carried:
            c = shape(last)[0]
            extra = rng.choice(emitting)
            source = conv_source(int(extra), c, 3, 1) if shape(int(extra))[1:] == shape(last)[1:] else \
                conv_source(last, c, 1, 1)
            levels, th = neuron_params(c)
            carried.add(last)
            add(f"carry{n}", "neuron", [source], shape(last), th, shift=int(rng.integers(0, 3)), carry=last)
        else:
            c = int(rng.integers(1, 2 * lanes + 1))
            kernel, stride = (int(rng.choice([1, 3])), int(rng.choice([1, 1, 2])))
            sources = [conv_source(last, c, kernel, stride)]
            second = [i for i in emitting if shape(i)[1:] == shape(last)[1:] and i != last]
            if second and rng.random() < 0.5:
                sources.append(conv_source(int(rng.choice(second)), c, kernel, stride))
            levels, th = neuron_params(c)
            add(f"neuron{n}", "neuron", sources, output_shape(shape(last), sources[0]), th,
                shift=int(rng.integers(0, 3)))
    last = max(i for i, layer in enumerate(layers) if layer.kind != "readout")
    n_in = int(np.prod(shape(last)))
    w = rng.integers(-12, 13, (3, n_in)).astype(np.int64)
    add("readout", "readout", [ProgramSource(input=last, op="linear", weight=w, in_shape=shape(last))], (3,))
    return layers, {layer.kind for layer in layers} | ({"carry"} if carried else set())


def compile_random(seed, size, n_stages, lanes, timesteps, multivalue="repeat", schedule="timestep_major"):
    arch = fuzz_arch(lanes, multivalue, schedule)
    layers, kinds = random_stages(seed, size, n_stages, lanes)
    program = compile_stages(layers, arch, timesteps, (1, size, size), PIXEL_MAX)
    return program, arch, kinds




def random_network(seed: int, channels, levels: int, timesteps: int, image_size: int):
    torch.manual_seed(seed)
    net = DigitsNet(channels=channels, levels=levels, timesteps=timesteps, image_size=image_size).eval()
    with torch.no_grad():
        for bn in (net.bn0, net.bn1):
            bn.running_var.uniform_(0.02, 0.5)
            bn.running_mean.uniform_(-0.3, 0.3)
            bn.weight.uniform_(0.5, 2.0)
            bn.bias.uniform_(-0.2, 0.8)
    return net


def random_built_network(seed: int, config: dict, calibration: torch.Tensor, input_scale: float):
    """``build_network(config)`` with seeded random weights, normalisation gains in ``[0.5, 1.5)`` and shifts in
    ``[0, 0.2)``, and running statistics of one batch of ``calibration`` integer images (divided by
    ``input_scale``), so that every layer is active; eval mode, ready for ``compile_network``."""
    from spikecore.models.networks import build_network

    torch.manual_seed(seed)
    net = build_network(config)
    net.input_scale, net.input_shape = input_scale, tuple(calibration.shape[1:])
    generator = torch.Generator().manual_seed(seed)
    for module in net.modules():
        if hasattr(module, "momentum") and hasattr(module, "running_mean"):
            module.momentum = 1.0
            with torch.no_grad():
                module.weight.copy_(0.5 + torch.rand(module.weight.shape, generator=generator))
                module.bias.copy_(0.2 * torch.rand(module.bias.shape, generator=generator))
    net.train()
    with torch.no_grad():
        net(calibration.float() / input_scale)
    return net.eval()
