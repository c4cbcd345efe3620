"""A float network evaluated from a stored stage graph (networks brought in from NIR, ``accel import``).

The graph is a list of *stages* in execution order, the same four kinds the compiler knows (``neuron``,
``readout``, ``sum``, ``gate``; ``docs/constructs.md``). Each stage adds its synaptic *sources* (a
convolution or a linear map of an earlier stage's output, or of the network input) and a per-channel
bias, then applies its kind:

- ``neuron``: a multi-level neuron (:class:`spikecore.models.neurons.MLF`, K = 1 is LIF, decay 1 is IF); its output
  is the spike count;
- ``readout``: never fires; the logits are its input averaged over the timesteps;
- ``sum``: the sum itself (sum and average pooling, residual additions);
- ``gate``: bit ``x`` of an 8-bit truth table, ``x`` being the (integer) sum of its binary inputs
  weighted 1, 2, 4.

Weights act on the *float values* of their inputs (the input is ``pixels / input_scale``; a neuron's
value is its spike count). ``gain`` is the float value of one integer unit of a stage's output (1 for
neurons and gates; ``1/4`` for a 2x2 average pool), which the compiler needs to emit sums as integer
events. ``carry`` names an earlier neuron stage whose accumulation (bias excluded) this stage's current
includes (the MS-ResNet membrane shortcut).

The description is plain data (:attr:`GraphNet.config`, JSON-able), the weights and biases are float64
parameters, so a checkpoint rebuilds the network with ``GraphNet(config)`` and ``load_state_dict``.
Inputs are time-major ``[T, N, C, H, W]``, or static ``[N, C, H, W]`` repeated over ``timesteps``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .neurons import make_neuron

GRAPH_MODEL = "graph"  # the "model" field of an imported network's checkpoint; "config" holds GraphNet's dict
PIXELS = -1
KINDS = ("neuron", "readout", "sum", "gate")
OPS = ("conv", "linear")


def _positive_int(value, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{key}: expected a positive integer, got {value!r}")
    return value


def _shape(value, key: str) -> tuple:
    if not isinstance(value, (list, tuple)) or len(value) not in (1, 3):
        raise ValueError(f"{key}: expected a shape [C, H, W] or [N], got {value!r}")
    return tuple(_positive_int(v, key) for v in value)


def source_output_shape(in_shape: tuple, op: str, weight_shape: tuple, stride: int, padding: int) -> tuple:
    """Output shape of a source: ``(N_out,)`` for a linear map, ``(C_out, H', W')`` for a convolution."""
    if op == "linear":
        return (int(weight_shape[0]),)
    _, h, w = in_shape
    kh, kw = weight_shape[2:]
    return (int(weight_shape[0]), (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1)


class _Stage(nn.Module):
    """The parameters of one stage: ``weights[j]`` of source ``j``, ``bias`` per output channel."""

    def __init__(self, weight_shapes: list, channels: int, neuron):
        super().__init__()
        self.weights = nn.ParameterList([nn.Parameter(torch.zeros(shape, dtype=torch.float64))
                                         for shape in weight_shapes])
        self.bias = nn.Parameter(torch.zeros(channels, dtype=torch.float64))
        self.neuron = neuron


class GraphNet(nn.Module):
    """A network given as a stage graph (see the module docstring for the ``config`` keys).

    Parameters
    ----------
    config : dict
        ``input_shape`` ([C, H, W] or [N]), ``input_scale`` (integer pixels = float input x scale),
        ``timesteps`` and ``stages``: a list of dicts with ``name``, ``kind``, ``sources`` (each
        ``{"input": stage index or -1, "op": "conv" | "linear", "shape": weight shape, "stride",
        "padding"}``), and as the kind needs ``neuron`` (a :func:`spikecore.models.neurons.make_neuron` spec),
        ``truth_table``, ``carry`` (a stage index), ``gain``. The last stage, and only it, is the readout.

    Raises
    ------
    ValueError
        Naming the offending key when the description is inconsistent.
    """

    def __init__(self, config: dict):
        super().__init__()
        if not isinstance(config, dict):
            raise ValueError(f"config: expected a dict, got {type(config).__name__}")
        self.input_shape = _shape(config.get("input_shape"), "input_shape")
        scale = config.get("input_scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"input_scale: expected a positive number, got {scale!r}")
        self.input_scale = float(scale)
        self.timesteps = _positive_int(config.get("timesteps"), "timesteps")
        specs = config.get("stages")
        if not isinstance(specs, list) or not specs:
            raise ValueError("stages: expected a non-empty list")
        self.specs, self.shapes, stages = [], [], []
        for i, spec in enumerate(specs):
            spec = self._check_stage(i, spec)
            self.specs.append(spec)  # make_neuron raises ValueError naming a bad neuron key
            stages.append(_Stage([src["shape"] for src in spec["sources"]], spec["out_shape"][0],
                                 make_neuron(spec["neuron"]) if spec["kind"] == "neuron" else None))
        kinds = [spec["kind"] for spec in self.specs]
        if kinds[-1] != "readout" or "readout" in kinds[:-1]:
            raise ValueError("stages: the last stage, and only it, must be the readout")
        self.stages = nn.ModuleList(stages)
        self.config = {"input_shape": list(self.input_shape), "input_scale": self.input_scale,
                       "timesteps": self.timesteps, "stages": self.specs}

    def _check_stage(self, i: int, spec) -> dict:
        """Validate stage ``i`` against the earlier ones; returns its normalised description."""
        key = f"stages[{i}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{key}: expected a dict")
        kind = spec.get("kind")
        if kind not in KINDS:
            raise ValueError(f"{key}.kind: expected one of {list(KINDS)}, got {kind!r}")
        sources = spec.get("sources")
        if not isinstance(sources, list) or not sources:
            raise ValueError(f"{key}.sources: expected a non-empty list")
        out = {"name": str(spec.get("name", f"stage{i}")), "kind": kind, "sources": [],
               "gain": float(spec.get("gain", 1.0)), "truth_table": int(spec.get("truth_table", 0)),
               "carry": spec.get("carry"), "neuron": spec.get("neuron")}
        out_shape = None
        for j, src in enumerate(sources):
            skey = f"{key}.sources[{j}]"
            if not isinstance(src, dict) or src.get("op") not in OPS:
                raise ValueError(f"{skey}.op: expected one of {list(OPS)}")
            x = src.get("input")
            if isinstance(x, bool) or not isinstance(x, int) or not PIXELS <= x < i:
                raise ValueError(f"{skey}.input: expected -1 (the input) or an earlier stage, got {x!r}")
            if x != PIXELS and self.specs[x]["kind"] == "readout":
                raise ValueError(f"{skey}.input: the readout emits nothing")
            in_shape = self.input_shape if x == PIXELS else tuple(self.shapes[x])
            shape = tuple(src.get("shape") or ())
            stride, padding = src.get("stride", 1), src.get("padding", 0)
            _positive_int(stride, f"{skey}.stride")
            if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0:
                raise ValueError(f"{skey}.padding: expected a non-negative integer, got {padding!r}")
            if src["op"] == "linear":
                valid = len(shape) == 2 and shape[1] == math.prod(in_shape)
            else:
                valid = len(shape) == 4 and len(in_shape) == 3 and shape[1] == in_shape[0] \
                    and shape[2] <= in_shape[1] + 2 * padding and shape[3] <= in_shape[2] + 2 * padding
            if not valid or min(shape) < 1:
                raise ValueError(f"{skey}.shape: {list(shape)} does not fit an input of shape {list(in_shape)}")
            shape_out = source_output_shape(in_shape, src["op"], shape, stride, padding)
            if out_shape is not None and shape_out != out_shape:
                raise ValueError(f"{skey}: output shape {list(shape_out)} differs from the first source's "
                                 f"{list(out_shape)}")
            out_shape = shape_out
            out["sources"].append({"input": x, "op": src["op"], "shape": list(shape), "stride": stride,
                                   "padding": padding})
        out["out_shape"] = list(out_shape)
        if kind != "neuron":
            out["neuron"] = None
        carry = out["carry"]
        if carry is not None and (kind != "neuron" or isinstance(carry, bool) or not isinstance(carry, int)
                                  or not 0 <= carry < i or self.specs[carry]["kind"] != "neuron"
                                  or self.shapes[carry] != out_shape):
            raise ValueError(f"{key}.carry: expected an earlier neuron stage of the same shape, got {carry!r}")
        if not 0 <= out["truth_table"] < 256 or not math.isfinite(out["gain"]) or out["gain"] <= 0:
            raise ValueError(f"{key}: truth_table must be in 0..255 and gain positive")
        self.shapes.append(out_shape)
        return out

    def trace(self, x: torch.Tensor) -> list:
        """Run the network; returns every stage's output ``[T, N, ...]`` (the readout's: its input current).

        ``x`` is the float input, ``[T, N, *input_shape]`` or static ``[N, *input_shape]``.
        """
        if x.dim() == len(self.input_shape) + 1:
            x = x.unsqueeze(0).expand((self.timesteps,) + tuple(x.shape))
        x = x.to(torch.float64)
        steps, batch = x.shape[:2]
        outputs, accumulations = [], []
        for spec, stage in zip(self.specs, self.stages):
            acc = 0
            for src, weight in zip(spec["sources"], stage.weights):
                value = x if src["input"] == PIXELS else outputs[src["input"]]
                value = value.reshape((steps * batch,) + tuple(value.shape[2:]))
                if src["op"] == "conv":
                    y = F.conv2d(value, weight, stride=src["stride"], padding=src["padding"])
                else:
                    y = value.flatten(1) @ weight.t()
                acc = acc + y.reshape((steps, batch) + tuple(y.shape[1:]))
            if spec["carry"] is not None:
                acc = acc + accumulations[spec["carry"]]
            accumulations.append(acc)
            current = acc + stage.bias.view((-1,) + (1,) * (len(spec["out_shape"]) - 1))
            if spec["kind"] == "neuron":
                out = stage.neuron(current)
            elif spec["kind"] == "gate":
                index = current.round().clamp(0, 7).to(torch.int64)
                out = torch.bitwise_and(torch.bitwise_right_shift(torch.tensor(spec["truth_table"]), index), 1)
                out = out.to(torch.float64)
            else:
                out = current
            outputs.append(out)
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The logits: the readout's input averaged over the timesteps, ``[N, classes]``."""
        return self.trace(x)[-1].mean(0)
