"""Architecture YAML validation and the shared bit layouts."""
import numpy as np
import pytest

from accel import UserError
from accel.config import arch_from_dict, default_arch, load_arch
from accel.layouts import all_layouts


def test_default_arch_loads():
    arch = default_arch()
    assert arch.lanes == 8 and arch.memories.synapses == 16384
    assert len(arch.fingerprint()) == 16


@pytest.mark.parametrize("data, message", [
    ({"lanez": 4}, "unknown key 'lanez' (did you mean 'lanes'?)"),
    ({"memories": {"synapse": 4}}, "unknown key 'memories.synapse' (did you mean 'memories.synapses'?)"),
    ({"lanes": 0}, "key 'lanes' = 0 is out of range"),
    ({"lanes": 6}, "key 'lanes' = 6 must be a power of two"),
    ({"weight_bits": "8"}, "key 'weight_bits' must be an integer"),
    ({"memories": {"state": 1}}, "key 'memories.state' = 1 is out of range"),
    ({"multivalue": "serial"}, "key 'multivalue' = 'serial' is not one of repeat, bitserial"),
    ({"event_regions": 1}, "key 'event_regions' = 1 is out of range"),
    ({"acc_bits": 30, "membrane_bits": 20}, "acc_bits' = 30 must not exceed membrane_bits"),
    ({"clock_mhz": -1}, "key 'clock_mhz'"),
    ([1, 2], "expected a mapping"),
])
def test_bad_arch_is_named(data, message):
    with pytest.raises(UserError) as err:
        arch_from_dict(data, "arch.yaml")
    assert message in str(err.value) and str(err.value).startswith("arch.yaml: ")
    assert "\n" not in str(err.value)


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lanes: 8\nmemories: [1, 2\n")
    with pytest.raises(UserError, match=r"bad.yaml: malformed YAML at line \d"):
        load_arch(bad)


def test_layout_pack_unpack_roundtrip_every_layout():
    rng = np.random.default_rng(1)
    arch = default_arch()
    for name, layout in all_layouts(arch).items():
        columns = {}
        for f in layout.fields:
            lo, hi = (-(1 << (f.width - 1)), (1 << (f.width - 1))) if f.signed else (0, 1 << f.width)
            columns[f.name] = rng.integers(lo, hi, size=(5,) + f.shape)
        words = layout.pack(**columns)
        assert all(0 <= w < (1 << layout.width) for w in words), name
        back = layout.unpack(words)
        for f in layout.fields:
            assert np.array_equal(back[f.name], columns[f.name]), (name, f.name)


def test_layout_pack_places_fields_lsb_first():
    layout = all_layouts(default_arch())["synapses"]
    word = layout.pack(row=np.array([3]), wrow=np.array([5]))[0]
    assert word == 3 | (5 << layout.field("row").width)


def test_layout_pack_rejects_overflow():
    layout = all_layouts(default_arch())["weights"]
    with pytest.raises(OverflowError, match="weight.w"):
        layout.pack(w=np.full((1, 8), 128))
