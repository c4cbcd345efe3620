"""Max pooling on the core (``docs/numerics.md``, "Max pooling"): a pool of binary spikes is their OR, which a
``gate`` stage computes exactly on every core; a pool of multi-valued events is a ``max`` stage, which needs a
core with comparators (``max_pool: true``) and is refused naming the layer elsewhere.

- SEW ResNet's 7B-Net (the DVS-Gesture network of the SEW paper: seven SEW blocks with the paper's ADD connect,
  each followed by a 2x2 max pool of its sums) on 2 x 128 x 128 frames of event counts compiles for a core with
  ``max_pool`` and runs bit-exact and cycle-exact on the golden model and both simulator engines (the contract
  suite's checks), and every pool's events are ``torch.nn.functional.max_pool2d`` of its input's events in the
  golden model; with a logic connect (binary spikes) its pools are gates;
- without ``max_pool``, the compiler refuses the first max pool of multi-valued events (the 7B-Net's sums, MLF
  counts K = 3, the pixels) in one line naming it, and a max stage whose source is not a window of 0/1 weights.

The VGGs with max pools of the contract suite (``programs.BUILT_NETWORKS``) run on every implementation, the RTL
included (``test_contract.py``).
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict
from spikecore.errors import UserError
from spikecore.models.hwexact import run_integer_network

from .generators import random_built_network
from .suite import REFERENCES, Subject, problems

#: Event counts of a DVS frame (the input of the 7B-Net), 0..3; the joins' sums grow to 8 (``input_bits`` 4).
FRAME_MAX, FRAME_DENSITY, SIDE = 3, 0.1, 128
#: A core with comparators and memories for the 7B-Net of width 2 at 128 x 128 (two lanes: no padding lanes).
SEW7B_ARCH = {"name": "sew7b", "max_pool": True, "lanes": 2, "weight_bits": 8, "acc_bits": 20, "membrane_bits": 20,
              "input_bits": 4, "max_levels": 1, "max_timesteps": 4, "event_regions": 6,
              "memories": {"layers": 64, "pointers": 1 << 20, "synapses": 1 << 22, "weights": 4096, "params": 64,
                           "state": 1 << 17, "events": 1 << 15, "inputs": 1 << 15, "trace": 1 << 16}}


def frames(seed: int, count: int) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    shape = (count, 2, SIDE, SIDE)
    return torch.tensor(rng.integers(0, FRAME_MAX + 1, shape) * (rng.random(shape) < FRAME_DENSITY))


def sew7b(connect: str = "ADD"):
    return random_built_network(14, {"arch": "sew7b", "width": 2, "timesteps": 2, "connect": connect},
                                frames(0, 8), FRAME_MAX)


def pool_stages(program) -> list:
    """The indices of the 7B-Net's pools among the stages of a Program or a float graph."""
    stages = program.layers if hasattr(program, "layers") else program.stages
    return [i for i, stage in enumerate(stages) if stage.name in {f"blocks.{b}" for b in range(1, 14, 2)}]


def test_sew7b_runs_bit_exact_on_a_core_with_comparators():
    arch = arch_from_dict(SEW7B_ARCH)
    program = compile_network(sew7b(), arch)
    pools = pool_stages(program)
    assert len(pools) == 7 and all(program.layers[i].kind == "max" for i in pools)
    pixels = frames(1, 2).reshape(2, -1).numpy().astype(np.int64)
    found = problems(Subject.drawn(program, arch, pixels), [REFERENCES[name] for name in ("golden", "dense",
                                                                                          "tables")])
    assert found == [], "\n".join(found[:10])
    spikes = run_integer_network(program.integer_stages(), torch.tensor(pixels).view(-1, *program.input_shape),
                                 program.timesteps, arch.membrane_bits, arch.value_bits)["spikes"]
    for i in pools:
        pooled = F.max_pool2d(spikes[i - 1].flatten(0, 1).float(), 2).view_as(spikes[i])
        assert torch.equal(spikes[i], pooled.to(spikes[i].dtype)), program.layers[i].name
    assert spikes[pools[-1]].sum() > 0   # the last pool fires: the check above compared events


def test_sew7b_with_a_logic_connect_pools_with_gates():
    from spikecore.accel.contract.lowering import lower

    graph = lower(sew7b("IAND"), (2, SIDE, SIDE), FRAME_MAX)
    assert [graph.stages[i].kind for i in pool_stages(graph)] == ["gate"] * 7


NEEDS_COMPARATORS = "max pooling of multi-valued events needs the comparators of 'max_pool: true' in the architecture"


@pytest.mark.parametrize("config, layer", [
    ({"arch": "sew7b", "width": 2, "timesteps": 2}, "blocks.1"),
    ({"arch": "vgg", "layers": [4, "M", 6], "image_size": 8, "in_channels": 1, "levels": 3}, "features.3"),
    ({"arch": "vgg", "layers": ["M", 4], "image_size": 8, "in_channels": 1, "neuron": {"type": "if"}}, "features.0"),
])
def test_max_pools_of_multi_valued_events_need_comparators(config, layer):
    from spikecore.models.networks import build_network

    net = build_network(config)
    side = config.get("image_size", SIDE)
    net.input_scale, net.input_shape = FRAME_MAX, (config.get("in_channels", 2), side, side)
    with pytest.raises(UserError) as error:
        compile_network(net, arch_from_dict({**SEW7B_ARCH, "max_pool": False, "max_levels": 4}))
    assert str(error.value) == f"layer {layer}: {NEEDS_COMPARATORS}"


def test_a_max_stage_is_a_window_of_zeros_and_ones():
    from spikecore.accel.contract.compiler import check_max_stage
    from spikecore.accel.contract.program import ProgramLayer, ProgramSource

    arch = arch_from_dict(SEW7B_ARCH)
    weight = np.zeros((2, 2, 2, 2), np.int64)
    weight[[0, 1], [0, 1]] = 1
    layer = ProgramLayer(name="pool", kind="max", out_shape=(2, 2, 2), bias=np.zeros(2, np.int64),
                         thresholds=np.zeros((1, 2), np.int64), scale=np.ones(2),
                         sources=[ProgramSource(input=0, op="conv", weight=weight, in_shape=(2, 4, 4), stride=2)])
    check_max_stage(layer, arch)
    for weight_value, bias in ((2, 0), (1, 1)):
        layer.sources[0].weight = weight * weight_value
        layer.bias = np.full(2, bias, np.int64)
        with pytest.raises(UserError, match="layer pool: a max stage has one convolution source of weights 0 or 1"):
            check_max_stage(layer, arch)


def test_a_max_stage_does_not_export_to_nir():
    from spikecore.accel.flows.nir_io import export_graph
    from spikecore.models.networks import build_network

    net = build_network({"arch": "vgg", "layers": [4, "M", 6], "image_size": 8, "in_channels": 1})
    net.input_scale, net.input_shape = 16, (1, 8, 8)
    with pytest.raises(UserError) as error:
        export_graph(net, arch_from_dict({**SEW7B_ARCH, "max_pool": True, "max_levels": 4, "input_bits": 5}))
    assert str(error.value) == "layer features.3: max pooling of multi-valued events has no NIR node to export to"
