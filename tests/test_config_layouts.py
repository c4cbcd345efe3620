"""Architecture YAML validation and the shared bit layouts."""
import numpy as np
import pytest

from spikecore.errors import UserError
from spikecore.accel.contract.config import arch_from_dict, default_arch, load_arch
from spikecore.accel.contract.layouts import all_layouts


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
    ({"lanes": 8, "update_lanes": 3}, "key 'update_lanes' = 3 must be a power of two no larger than lanes = 8"),
    ({"lanes": 4, "update_lanes": 8}, "key 'update_lanes' = 8 must be a power of two no larger than lanes = 4"),
    ({"banks": "pointers"}, "key 'banks' must be a list of lists of memory names"),
    ({"banks": [["pointers"]]}, "key 'banks[0]' must be a list of at least two memory names"),
    ({"banks": [["pointers", "synapse"]]}, "banks[0]': unknown memory 'synapse' (did you mean 'synapses'?)"),
    ({"banks": [["pointers", "synapses"], ["synapses", "layers"]]},
     "banks[1]': memory 'synapses' is already in banks[0]"),
    ({"banks": [["weights", "synapses", "acc"]]},
     "banks[0]': 'weights' and 'acc' cannot share a single-port bank: they are read together for every synapse row"),
    ({"banks": [["state", "params"]]}, "'state' and 'params' cannot share a single-port bank"),
    ({"banks": [["events", "trace"]]}, "'events' and 'trace' cannot share a single-port bank"),
    ({"banks": [["inputs", "events"]]}, "'inputs' and 'events' cannot share a single-port bank"),
    ({"banks": [["trace", "layers"]], "memories": {"trace": 0}}, "memory 'trace' is empty"),
    ({"schedule": "layer-major"}, "key 'schedule' = 'layer-major' is not one of timestep_major, layer_major"),
    ({"max_pool": "yes"}, "key 'max_pool' = 'yes' must be true or false"),
    ({"max_pool": 1}, "key 'max_pool' = 1 must be true or false"),
    ({"schedule": "layer_major", "max_timesteps": 64},
     "key 'schedule' = 'layer_major' needs event words of max_timesteps x value_bits + index = 64 x 8 + "),
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


def test_fingerprint_digests_what_the_core_is():
    plain = arch_from_dict({"lanes": 8})
    # update_lanes 0 means every lane: the same core, the same fingerprint (and that of a configuration
    # written before the key existed)
    assert arch_from_dict({"lanes": 8, "update_lanes": 8}).fingerprint() == plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "update_lanes": 2}).fingerprint() != plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "banks": [["pointers", "synapses"]]}).fingerprint() != plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "schedule": "timestep_major"}).fingerprint() == plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "schedule": "layer_major"}).fingerprint() != plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "max_pool": False}).fingerprint() == plain.fingerprint()
    assert arch_from_dict({"lanes": 8, "max_pool": True}).fingerprint() != plain.fingerprint()


def test_layer_major_words_hold_a_value_per_timestep():
    from spikecore.accel.contract.layouts import memory_depths

    timestep_major = arch_from_dict({"lanes": 8, "max_timesteps": 5, "memories": {"state": 64}})
    layer_major = arch_from_dict({"lanes": 8, "max_timesteps": 5, "memories": {"state": 64},
                                  "schedule": "layer_major"})
    events, trace = all_layouts(layer_major)["events"], all_layouts(layer_major)["trace"]
    assert [f.name for f in events.fields] == ["index", "train"] and events.field("train").shape == (5,)
    assert events.width == layer_major.neuron_index_bits + 5 * layer_major.value_bits
    assert [f.name for f in trace.fields] == ["layer", "index", "train"]
    # an accumulator row is one word per timestep slot: 8 slots for T up to 5 (3 timestep bits)
    assert layer_major.acc_slots == 8 and timestep_major.acc_slots == 1
    assert memory_depths(layer_major)["acc"] == 8 * memory_depths(timestep_major)["acc"] == 512


def test_bank_geometry_packs_narrow_members_and_round_trips():
    from spikecore.accel.contract.layouts import from_physical, memory_depths, physical_memories, to_physical

    arch = default_arch()
    bank = next(memory for memory in physical_memories(arch) if memory.is_bank)
    layouts = all_layouts(arch)
    # as wide as the widest member rounded up to bytes; every member's words fit its slots, in order
    assert bank.width == -(-max(layouts[n].width for n in bank.members) // 8) * 8
    depths, base = memory_depths(arch), 0
    for name, slot in bank.members.items():
        assert slot.base == base and slot.pack * slot.slot_bits == bank.width
        assert layouts[name].width <= slot.slot_bits and slot.slot_bits % 4 == 0
        # packed as densely as whole-nibble slots allow
        assert slot.pack == 8 or 2 * layouts[name].width > slot.slot_bits or (slot.slot_bits // 2) % 4
        base += -(-depths[name] // slot.pack)
    assert bank.depth == base
    assert bank.granularity == min(slot.slot_bits for slot in bank.members.values())
    # the default bank fits the UP5K's four 16K x 16 SPRAMs
    assert bank.depth <= 16384 and bank.width <= 64
    rng = np.random.default_rng(0)
    images = {name: [int(v) for v in rng.integers(0, 1 << layouts[name].width, size=n)]
              for name, n in (("pointers", 7), ("synapses", 5), ("trace", 3), ("inputs", 9))}
    words = to_physical(arch, images)[bank.name]
    for name, image in images.items():
        slot = bank.members[name]
        assert from_physical(arch, name, words[slot.base:], len(image)) == image


def test_layer_major_example_is_the_default_in_the_other_schedule():
    from pathlib import Path

    example = load_arch(Path(__file__).resolve().parents[1] / "examples" / "arch_layer_major.yaml")
    default = default_arch()
    assert example.layer_major and example.max_timesteps == 4
    assert {k: v for k, v in example.to_dict().items() if k not in ("name", "schedule", "max_timesteps")} == \
        {k: v for k, v in default.to_dict().items() if k not in ("name", "schedule", "max_timesteps")}
