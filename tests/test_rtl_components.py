"""Amaranth-simulation tests of the arithmetic units and of the memory-word layouts of the RTL.

The neuron update unit is compared against the golden model ``spikecore.models.hwexact.neuron_step_int``; the AC
array against exact integer addition clamped to ``acc_bits``.
"""
import numpy as np
import pytest
import torch
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from spikecore.accel.contract.config import default_arch
from spikecore.accel.contract.layouts import all_layouts
from spikecore.models.hwexact import neuron_step_int
from spikecore.accel.contract.layouts import KIND_GATE, KIND_NEURON, KIND_SUM
from spikecore.models import IntegerStage
from spikecore.models.hwexact import stage_output
from spikecore.rtl.components import AcArray, NeuronUpdate
from spikecore.rtl.layouts import to_amaranth


def signed_range(bits):
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def run_comb(dut, cases, check, clocked=False):
    """Drive every case's inputs into ``dut`` and call ``check(ctx, case)`` on each: at once for a
    combinational unit, after one clock edge for a ``clocked`` (registered) one."""
    sim = Simulator(dut)
    if clocked:
        sim.add_clock(1e-6)

    async def testbench(ctx):
        for case in cases:
            for port, value in case["inputs"].items():
                ctx.set(getattr(dut, port), value)
            if clocked:
                await ctx.tick()
            check(ctx, case)

    sim.add_testbench(testbench)
    sim.run()


# ---- AC array ------------------------------------------------------------------------------------
def ac_cases(rng, lanes, acc_bits, weight_bits, n):
    acc_lo, acc_hi = signed_range(acc_bits)
    w_lo, w_hi = signed_range(weight_bits)
    cases = [(rng.integers(acc_lo, acc_hi + 1, lanes), rng.integers(w_lo, w_hi + 1, lanes)) for _ in range(n)]
    # Saturation on both sides, exact limits reached without clamping, and zero.
    cases.append((np.full(lanes, acc_hi), np.full(lanes, w_hi)))
    cases.append((np.full(lanes, acc_lo), np.full(lanes, w_lo)))
    cases.append((np.full(lanes, acc_hi - 1), np.full(lanes, 1)))
    cases.append((np.full(lanes, acc_lo + 1), np.full(lanes, -1)))
    cases.append((np.zeros(lanes, int), np.zeros(lanes, int)))
    return [{"inputs": {"acc_in": [int(v) for v in acc], "weight": [int(v) for v in w]}} for acc, w in cases]


@pytest.mark.parametrize("lanes, acc_bits, weight_bits", [(8, 20, 8), (4, 6, 4), (1, 4, 4)])
def test_ac_array_matches_saturating_add(lanes, acc_bits, weight_bits):
    rng = np.random.default_rng(1234 + lanes)
    dut = AcArray(lanes, acc_bits, weight_bits)
    lo, hi = signed_range(acc_bits)
    seen = {"saturated": 0, "cases": 0}

    def check(ctx, case):
        exact = [a + w for a, w in zip(case["inputs"]["acc_in"], case["inputs"]["weight"])]
        expected = [min(max(v, lo), hi) for v in exact]
        flags = [int(v != c) for v, c in zip(exact, expected)]
        assert [ctx.get(dut.acc_out[i]) for i in range(lanes)] == expected
        assert [ctx.get(dut.saturated[i]) for i in range(lanes)] == flags
        assert ctx.get(dut.saturation_count) == sum(flags)
        seen["saturated"] += sum(flags)
        seen["cases"] += 1

    cases = ac_cases(rng, lanes, acc_bits, weight_bits, 200)
    run_comb(dut, cases, check)
    assert seen["cases"] == len(cases) and seen["saturated"] >= 2 * lanes


def test_ac_array_comparators_take_the_maximum_on_selected_lanes():
    """With ``value_bits`` (a core with ``max_pool``): while ``compare`` is high each lane gives
    ``max(acc_in, value)`` where its weight is nonzero and ``acc_in`` elsewhere, never saturating; while it is low
    the lanes add as before."""
    lanes, acc_bits, weight_bits, value_bits = 4, 6, 4, 3
    rng = np.random.default_rng(7)
    dut = AcArray(lanes, acc_bits, weight_bits, value_bits=value_bits)
    lo, hi = signed_range(acc_bits)
    cases = []
    for acc, w in [(c["inputs"]["acc_in"], c["inputs"]["weight"]) for c in ac_cases(rng, lanes, acc_bits,
                                                                                      weight_bits, 100)]:
        for compare in (0, 1):
            cases.append({"inputs": {"acc_in": acc, "weight": w, "compare": compare,
                                     "value": int(rng.integers(0, 1 << value_bits))}})

    def check(ctx, case):
        inputs = case["inputs"]
        if inputs["compare"]:
            expected = [max(a, inputs["value"]) if w else a for a, w in zip(inputs["acc_in"], inputs["weight"])]
            flags = [0] * lanes
        else:
            exact = [a + w for a, w in zip(inputs["acc_in"], inputs["weight"])]
            expected = [min(max(v, lo), hi) for v in exact]
            flags = [int(v != c) for v, c in zip(exact, expected)]
        assert [ctx.get(dut.acc_out[i]) for i in range(lanes)] == expected, case
        assert [ctx.get(dut.saturated[i]) for i in range(lanes)] == flags
        assert ctx.get(dut.saturation_count) == sum(flags)

    run_comb(dut, cases, check)
    with pytest.raises(ValueError, match=r"value_bits must be an integer in \[0, 5\], got 6"):
        AcArray(lanes, acc_bits, weight_bits, value_bits=6)


def test_ac_array_rejects_bad_widths():
    with pytest.raises(ValueError, match=r"weight_bits must be an integer in \[2, 8\], got 9"):
        AcArray(4, 8, 9)
    with pytest.raises(ValueError, match=r"lanes must be an integer in \[1, 256\], got 0"):
        AcArray(0, 8, 4)
    with pytest.raises(ValueError, match=r"acc_bits must be an integer in \[2, 16\], got 20"):
        NeuronUpdate(4, 2, 20, 16, 4)
    with pytest.raises(ValueError, match=r"max_levels must be an integer in \[1, 8\], got 9"):
        NeuronUpdate(4, 9, 8, 16, 4)


# ---- neuron update unit ----------------------------------------------------------------------------
def golden_update(membrane, acc, bias, threshold, shift, levels, bits):
    """Expected outputs from the golden model: active levels only, inactive levels held at 0."""
    lanes, max_levels = membrane.shape
    u = torch.tensor(membrane[:, :levels].T, dtype=torch.int64)          # [K, lanes]
    x = torch.tensor(acc + bias, dtype=torch.int64)
    theta = torch.tensor(threshold[:, :levels].T, dtype=torch.int64)
    u_next, count, saturations = neuron_step_int(u, x, theta, shift, bits)
    full = np.zeros((lanes, max_levels), dtype=np.int64)
    full[:, :levels] = u_next.numpy().T
    return full, count.numpy(), saturations


def neuron_case(rng, lanes, max_levels, acc_bits, bits, extreme=False):
    m_lo, m_hi = signed_range(bits)
    a_lo, a_hi = signed_range(acc_bits)
    if extreme:  # push sums past both limits
        membrane = rng.choice([m_lo, m_hi, m_hi - 1, m_lo + 1, -1, 0], (lanes, max_levels))
        acc = rng.choice([a_lo, a_hi, 0], lanes)
        bias = rng.choice([m_lo, m_hi, 0], lanes)
    else:
        membrane = rng.integers(m_lo, m_hi + 1, (lanes, max_levels))
        acc = rng.integers(a_lo, a_hi + 1, lanes)
        bias = rng.integers(m_lo // 4, m_hi // 4 + 1, lanes)
    threshold = rng.integers(m_lo // 2, m_hi // 2 + 1, (lanes, max_levels))
    return {
        "membrane": membrane, "acc": acc, "bias": bias, "threshold": threshold,
        "shift": int(rng.integers(0, 8)), "levels": int(rng.integers(1, max_levels + 1)),
    }


def equality_case(lanes, max_levels, bits):
    """v == theta must not fire, v == theta + 1 must; negative membranes floor under the shift."""
    membrane = np.tile(np.array([-5, -1, 7, -8][:max_levels] + [0] * max(0, max_levels - 4)), (lanes, 1))
    shift = 2                          # -5 >> 2 = -2, -1 >> 2 = -1, 7 >> 2 = 1, -8 >> 2 = -2
    acc, bias = np.full(lanes, 3), np.full(lanes, 1)
    decayed = (membrane >> shift) + 4
    threshold = decayed.copy()
    threshold[1::2] -= 1               # odd lanes sit one below their sum and fire
    return {"membrane": membrane, "acc": acc, "bias": bias, "threshold": threshold, "shift": shift,
            "levels": max_levels}


@pytest.mark.parametrize("lanes, max_levels, acc_bits, bits, registered",
                         [(8, 4, 20, 20, False), (4, 3, 6, 8, False), (2, 1, 4, 4, False), (1, 4, 16, 16, True),
                          (4, 3, 6, 8, True)])
def test_neuron_update_matches_golden_model(lanes, max_levels, acc_bits, bits, registered):
    rng = np.random.default_rng(99 + lanes * max_levels)
    dut = NeuronUpdate(lanes, max_levels, acc_bits, bits, 4, registered=registered)
    cases = [neuron_case(rng, lanes, max_levels, acc_bits, bits) for _ in range(120)]
    cases += [neuron_case(rng, lanes, max_levels, acc_bits, bits, extreme=True) for _ in range(60)]
    cases.append(equality_case(lanes, max_levels, bits))
    totals = {"saturations": 0, "spikes": 0, "partial_levels": 0}

    def check(ctx, case):
        expected_u, expected_count, expected_sat = golden_update(
            case["membrane"], case["acc"], case["bias"], case["threshold"], case["shift"], case["levels"], bits)
        got_u = [[ctx.get(dut.membrane_next[i][k]) for k in range(max_levels)] for i in range(lanes)]
        assert got_u == expected_u.tolist()
        assert [ctx.get(dut.value[i]) for i in range(lanes)] == expected_count.tolist()
        assert ctx.get(dut.saturation_count) == expected_sat
        totals["saturations"] += expected_sat
        totals["spikes"] += int(expected_count.sum())
        totals["partial_levels"] += case["levels"] < max_levels

    for case in cases:
        case["inputs"] = {
            "membrane": case["membrane"].tolist(), "acc": case["acc"].tolist(), "bias": case["bias"].tolist(),
            "threshold": case["threshold"].tolist(), "shift": case["shift"], "levels": case["levels"],
            "kind": KIND_NEURON,
        }
    run_comb(dut, cases, check, clocked=registered)
    assert totals["saturations"] > 0 and totals["spikes"] > 0
    assert totals["partial_levels"] > 0 or max_levels == 1


def test_neuron_update_strict_threshold_and_floor_shift():
    """Hand-checked values, independent of random draws (4 lanes, 4 levels, 8-bit membranes)."""
    dut = NeuronUpdate(4, 4, 6, 8, 4)
    case = equality_case(4, 4, 8)
    case["inputs"] = {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in case.items()}

    def check(ctx, case):
        # Even lanes: v == theta, no spike, v stored: (-2+4, -1+4, 1+4, -2+4).
        assert [ctx.get(dut.membrane_next[0][k]) for k in range(4)] == [2, 3, 5, 2]
        assert ctx.get(dut.value[0]) == 0
        # Odd lanes: theta = v - 1, every level fires and resets.
        assert [ctx.get(dut.membrane_next[1][k]) for k in range(4)] == [0, 0, 0, 0]
        assert ctx.get(dut.value[1]) == 4

    run_comb(dut, [case], check)


def test_neuron_update_holds_inactive_levels_at_zero():
    dut = NeuronUpdate(2, 4, 8, 8, 4)
    inputs = {
        "membrane": [[100, 100, 127, -128]] * 2, "acc": [127, -45], "bias": [127, -45],
        "threshold": [[-128] * 4, [127] * 4], "shift": 0, "levels": 2,
    }

    def check(ctx, case):
        for lane in range(2):
            assert [ctx.get(dut.membrane_next[lane][k]) for k in (2, 3)] == [0, 0]
        # Lane 0 saturates high on both active levels and fires on both; lane 1 (100 - 90 = 10, below 127)
        # keeps its sums; the inactive levels would saturate (lane 0) or change, but are held and not counted.
        assert [ctx.get(dut.value[0]), ctx.get(dut.value[1])] == [2, 0]
        assert ctx.get(dut.saturation_count) == 2
        assert [ctx.get(dut.membrane_next[1][k]) for k in (0, 1)] == [10, 10]

    run_comb(dut, [{"inputs": inputs}], check)


# ---- layouts ----------------------------------------------------------------------------------------
def test_amaranth_layouts_have_accel_widths():
    layouts = all_layouts(default_arch())
    assert set(layouts) >= {"layers", "pointers", "synapses", "weights", "params", "state", "acc", "events",
                            "inputs", "trace"}
    for layout in layouts.values():
        assert to_amaranth(layout).size == layout.width, layout.name


def random_record(rng, layout):
    record = {}
    for field in layout.fields:
        lo, hi = signed_range(field.width) if field.signed else (0, (1 << field.width) - 1)
        record[field.name] = rng.integers(lo, hi + 1, (1,) + field.shape)
    return record


def view_fields(ctx, view, layout):
    """Read every field of an Amaranth view back as nested lists shaped like the accel field."""
    out = {}
    for field in layout.fields:
        member = view[field.name]
        if len(field.shape) == 0:
            out[field.name] = ctx.get(member)
        elif len(field.shape) == 1:
            out[field.name] = [ctx.get(member[i]) for i in range(field.shape[0])]
        else:
            out[field.name] = [[ctx.get(member[i][j]) for j in range(field.shape[1])]
                               for i in range(field.shape[0])]
    return out


def test_packed_words_read_back_through_amaranth_views():
    rng = np.random.default_rng(7)
    layouts = all_layouts(default_arch())
    m = Module()
    words = {name: Signal(layout.width, name=f"{name}_word") for name, layout in layouts.items()}
    views = {name: data.View(to_amaranth(layout), words[name]) for name, layout in layouts.items()}
    sim = Simulator(m)
    checked = []

    async def testbench(ctx):
        for _ in range(5):
            for name, layout in layouts.items():
                record = random_record(rng, layout)
                (word,) = layout.pack(**record)
                ctx.set(words[name], word)
                expected = {k: v[0].tolist() for k, v in record.items()}
                assert view_fields(ctx, views[name], layout) == expected, name
                checked.append(name)

    sim.add_testbench(testbench)
    sim.run()
    assert len(checked) == 5 * len(layouts)


@pytest.mark.parametrize("kind", ["sum", "gate"])
def test_update_unit_sum_and_gate_match_the_golden_stage(kind):
    """The stateless kinds against models.hwexact.stage_output, clamps (saturations) included."""
    lanes, value_bits = 8, 5
    rng = np.random.default_rng(7 if kind == "sum" else 8)
    dut = NeuronUpdate(lanes, 2, 10, 12, value_bits)
    seen = {"clamps": 0, "events": 0}
    cases = []
    for _ in range(150):
        table = int(rng.integers(0, 256))
        acc = rng.integers(-12, 45, lanes) if kind == "sum" else rng.integers(-2, 10, lanes)
        bias = rng.integers(-3, 4, lanes)
        cases.append({"table": table, "acc": acc, "bias": bias, "inputs": {
            "acc": acc.tolist(), "bias": bias.tolist(), "kind": KIND_SUM if kind == "sum" else KIND_GATE,
            "truth_table": table, "membrane": [[5, 5]] * lanes, "threshold": [[0, 0]] * lanes, "levels": 2,
            "shift": 0}})

    def check(ctx, case):
        stage = IntegerStage("s", kind, [], (lanes,), torch.zeros(lanes, dtype=torch.int64),
                             torch.zeros(1, lanes, dtype=torch.int64), truth_table=case["table"])
        x = torch.from_numpy(case["acc"] + case["bias"]).view(1, lanes)
        _, values, saturations = stage_output(stage, None, x, 12, value_bits)
        assert [ctx.get(dut.value[i]) for i in range(lanes)] == values.view(-1).tolist()
        assert ctx.get(dut.saturation_count) == saturations
        seen["clamps"] += saturations
        seen["events"] += int((values != 0).sum())

    run_comb(dut, cases, check)
    assert seen["clamps"] > 0 and seen["events"] > 0


def test_ac_array_shifted_weights_for_bitserial_inputs():
    dut = AcArray(4, 12, 5, max_shift=4)
    rng = np.random.default_rng(3)
    cases = [{"inputs": {"acc_in": rng.integers(-2048, 2048, 4).tolist(), "weight": rng.integers(-16, 16, 4).tolist(),
                         "shift": int(rng.integers(0, 5))}} for _ in range(200)]
    clamps = []

    def check(ctx, case):
        i = case["inputs"]
        exact = [a + (w << i["shift"]) for a, w in zip(i["acc_in"], i["weight"])]
        assert [ctx.get(dut.acc_out[k]) for k in range(4)] == [min(max(v, -2048), 2047) for v in exact]
        clamps.append(sum(v != min(max(v, -2048), 2047) for v in exact))

    run_comb(dut, cases, check)
    assert sum(clamps) > 0
