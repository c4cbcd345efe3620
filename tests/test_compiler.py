"""The compiler's passes and the Program format."""
import numpy as np
import pytest

from spikecore.errors import UserError
from spikecore.accel.contract.compiler import compile_network
from spikecore.accel.contract.config import arch_from_dict, default_arch
from spikecore.accel.contract.program import Program
from spikecore.accel.contract.quantize import leak_shift


def test_program_roundtrip_is_identical(digits_program, tmp_path):
    path = digits_program.save(tmp_path / "prog")
    loaded = Program.load(path)
    assert loaded.registers() == digits_program.registers()
    for a, b in zip(loaded.layers, digits_program.layers):
        assert a.manifest() == b.manifest()
        for key in ("bias", "thresholds", "scale"):
            assert np.array_equal(getattr(a, key), getattr(b, key))
        for sa, sb in zip(a.sources, b.sources):
            assert np.array_equal(sa.weight, sb.weight)
    for name, cols in digits_program.memories.items():
        for key, col in cols.items():
            assert np.array_equal(loaded.memories[name][key], col)
    assert loaded.memory_image(default_arch()) == digits_program.memory_image(default_arch())


def test_program_save_replaces_atomically(digits_program, tmp_path):
    path = tmp_path / "prog"
    digits_program.save(path)
    digits_program.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prog"]


def test_corrupt_program_is_rejected(digits_program, tmp_path):
    path = digits_program.save(tmp_path / "prog")
    (path / "arrays.npz").write_bytes(b"not a zip")
    with pytest.raises(UserError, match="arrays.npz: missing or corrupt"):
        Program.load(path)
    (path / "manifest.json").write_text('{"format": "spikecore-program", "version": 99}')
    with pytest.raises(UserError, match="format version 99 is not supported"):
        Program.load(path)


def test_quantization_rules(digits_program, arch):
    conv0, conv1, fc = digits_program.layers
    # per-channel power-of-two scales; weights use the width; thresholds floor(V_th * S)
    for layer in (conv0, conv1):
        assert np.all(np.log2(layer.scale) == np.round(np.log2(layer.scale)))
        assert np.abs(layer.sources[0].weight).max() <= 127
        expect = np.floor(np.array([0.6, 1.6, 2.6])[:, None] * layer.scale[None, :])
        assert np.array_equal(layer.thresholds, expect.astype(np.int64))
        assert layer.shift == 2
    assert len(set(fc.scale.tolist())) == 1  # one classifier scale keeps the argmax
    assert fc.shift == 0 and not fc.fires and np.all(fc.thresholds == 2 ** (arch.membrane_bits - 1) - 1)


def test_leak_must_be_power_of_two():
    assert leak_shift(0.25, "l") == 2 and leak_shift(1.0, "l") == 0
    with pytest.raises(UserError, match="layer conv0: decay 0.3 is not a power of two"):
        leak_shift(0.3, "conv0")


def test_memory_too_small_names_layer_and_memory(digits_net):
    small = arch_from_dict({"memories": {"synapses": 4096}})
    with pytest.raises(UserError, match=r"layer conv1: the network needs \d+ words of memory 'synapses'"):
        compile_network(digits_net, small)


def test_accumulator_overflow_is_rejected(digits_net):
    narrow = arch_from_dict({"acc_bits": 12, "membrane_bits": 20})
    with pytest.raises(UserError, match=r"layer conv0: accumulator bound \d+ .* overflows acc_bits = 12"):
        compile_network(digits_net, narrow)


def test_fanout_tables_match_convolution(digits_program, arch):
    """Every synapse row of conv0 adds W[c, 0, ky, kx] of the right kernel tap into the right neuron."""
    layer = digits_program.layers[0]
    mem = digits_program.memories
    lanes = arch.lanes
    for pixel in (0, 9, 63):
        y, x = divmod(pixel, 8)
        start, count = mem["pointers"]["start"][pixel], mem["pointers"]["count"][pixel]
        seen = 0
        for j in range(start, start + count):
            row, wrow = mem["synapses"]["row"][j], mem["synapses"]["wrow"][j]
            q, block = divmod(row - layer.acc_base, layer.n_blocks)
            oy, ox = divmod(q, 8)
            ky, kx = y + 1 - oy, x + 1 - ox
            expect = layer.sources[0].weight[block * lanes:(block + 1) * lanes, 0, ky, kx]
            assert np.array_equal(mem["weights"]["w"][wrow], expect)
            seen += 1
        weights = layer.sources[0].weight
        nonzero = sum(1 for ky in range(3) for kx in range(3) for b in range(layer.n_blocks)
                      if 0 <= y + 1 - ky < 8 and 0 <= x + 1 - kx < 8
                      and np.any(weights[b * lanes:(b + 1) * lanes, 0, ky, kx]))
        assert seen == nonzero  # all-zero weight rows get no synapse row
