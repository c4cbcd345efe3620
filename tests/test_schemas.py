"""The JSON Schemas of the configuration files: generated from the loaders' tables, shipped current, and
never stricter than the loaders (every document a loader accepts satisfies its schema; the fuzz test of
tests/test_fuzz_inputs.py checks that on its mutations too)."""
import json
from dataclasses import fields
from pathlib import Path

import jsonschema
import pytest
import yaml

from spikecore.accel.flows.cli import main
from spikecore.accel.contract.config import ArchConfig, Memories
from spikecore.accel.flows.schemas import SCHEMA_NAMES, SCHEMAS, schema_text, shipped_schema_path
from spikecore.accel.flows.sweep import RANDOM_KEYS, SPEC_KEYS, SYNTH_KEYS

ROOT = Path(__file__).parents[1]
VALID = [("arch", "accel/data/templates/arch.yaml"), ("arch", "accel/data/default_arch.yaml"),
         ("arch", "accel/data/methods_arch.yaml"), ("arch", "bench/resnet20_arch.yaml"),
         ("arch", "examples/arch_layer_major.yaml"), ("sweep", "accel/data/templates/sweep.yaml"),
         ("sweep", "examples/sweep_digits.yaml"), ("train", "accel/data/templates/train.yaml"),
         ("train", "examples/train_digits.yaml")]
INVALID = [("arch", {"lanez": 8}), ("arch", {"lanes": 1000}), ("arch", {"memories": {"synapse": 8}}),
           ("arch", {"schedule": "diagonal"}), ("arch", {"banks": [["weights"]]}), ("arch", {"name": "a b"}),
           ("sweep", {"gird": {"lanes": [8]}}), ("sweep", {"grid": {"lanez": [8]}}), ("sweep", {"name": "x"}),
           ("sweep", {"grid": {"lanes": [0]}}), ("sweep", {"grid": {"lanes": [8]}, "synth": {"target": "ice41"}}),
           ("train", {"model": {"levles": 3}}), ("train", {"train": {"epochs": 0}}),
           ("train", {"dataset": "imagenet"}), ("train", {"dataset": {"name": "cifar10"}, "model": {"arch": "resnet"}}),
           ("train", {"model": {"arch": "resnet", "timesteps": 0}})]


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_shipped_schemas_are_current_and_valid(name):
    assert shipped_schema_path(name).read_text() == schema_text(name), \
        f"regenerate: accel schema {name} --out accel/data/schemas/{name}.schema.json"
    jsonschema.Draft202012Validator.check_schema(SCHEMAS[name]())


def test_every_key_has_a_schema():
    arch = SCHEMAS["arch"]()["properties"]
    assert set(arch) == {f.name for f in fields(ArchConfig)}
    assert set(arch["memories"]["properties"]) == {f.name for f in fields(Memories)}
    sweep = SCHEMAS["sweep"]()["properties"]
    assert set(sweep) == set(SPEC_KEYS) and set(sweep["random"]["properties"]) == set(RANDOM_KEYS)
    assert set(sweep["synth"]["properties"]) == set(SYNTH_KEYS)


@pytest.mark.parametrize("name, path", VALID, ids=[p for _, p in VALID])
def test_shipped_configurations_satisfy_their_schema(name, path):
    jsonschema.validate(yaml.safe_load((ROOT / path).read_text()), SCHEMAS[name]())


@pytest.mark.parametrize("name, document", INVALID, ids=[json.dumps(d) for _, d in INVALID])
def test_what_the_loaders_refuse_for_a_key_type_range_or_choice_the_schema_refuses(name, document):
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(document, SCHEMAS[name]())


def test_accel_schema_prints_and_writes(tmp_path, capsys):
    assert main(["schema", "arch"]) == 0
    assert json.loads(capsys.readouterr().out) == SCHEMAS["arch"]()
    out = tmp_path / "arch.schema.json"
    assert main(["schema", "arch", "--out", str(out)]) == 0
    assert main(["schema", "arch", "--out", str(out)]) == 0  # its own file is rewritten
    assert out.read_text() == schema_text("arch")
    mine = tmp_path / "mine.json"
    mine.write_text('{"mine": 1}')
    capsys.readouterr()
    assert main(["schema", "sweep", "--out", str(mine)]) == 2
    assert "exists and is not a schema" in capsys.readouterr().err and mine.read_text() == '{"mine": 1}'
