"""The model zoo: a trained digits checkpoint per method (``accel/data/methods/``,
``scripts/make_method_checkpoints.py``) and ``accel demo --method NAME --pretrained``.

Every manifest entry's file exists with its recorded SHA-256 and loads; every method's checkpoint compiles for
the methods core with golden == simulator on a few test images; the demo runs end to end on the RTL for an
MLF method and a residual one; a damaged or missing zoo file is one line naming it (exit 2, nothing
written); and the README and docs/constructs.md say what the manifest holds.
"""
import hashlib
import json
import re
import shutil
from importlib import resources
from pathlib import Path

import pytest

from spikecore import api
from spikecore.accel.contract.checkpoint import load_checkpoint
from spikecore.accel.flows import methods
from spikecore.accel.flows.cli import main
from spikecore.accel.flows.methods import METHODS, ZOO_ENV, pretrained_checkpoint, zoo_dir, zoo_manifest
from spikecore.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = Path(str(resources.files("spikecore.accel") / "data" / "methods"))
SIM_IMAGES = 4
#: Methods whose demo runs end to end on the RTL here: one of the MLF family, one residual network.
DEMO_METHODS = ("mlf-k3", "spiking-resnet")


@pytest.fixture(autouse=True)
def shipped_zoo(monkeypatch):
    """The shipped zoo, whatever ``$SPIKECORE_MODEL_ZOO`` says outside the tests (tests set it themselves)."""
    monkeypatch.delenv(ZOO_ENV, raising=False)


@pytest.fixture(scope="module")
def manifest():
    return zoo_manifest(SHIPPED)


@pytest.fixture(scope="module")
def methods_arch():
    return api.load_arch(methods.methods_arch_path())


def test_the_zoo_is_the_shipped_package_data_and_holds_every_method(manifest):
    assert zoo_dir() == SHIPPED
    assert list(manifest) == list(METHODS)
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"data/methods/*.pt", "data/methods/*.json"' in pyproject  # installed with the package


@pytest.mark.parametrize("name", list(METHODS))
def test_manifest_entry_file_exists_with_its_hash_and_loads(name, manifest):
    entry = manifest[name]
    path = zoo_dir() / entry["file"]
    assert entry["file"] == f"{name}.pt" and path.is_file()
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
    assert len(data) < 300 * 1024, f"{path}: {len(data)} bytes"
    assert pretrained_checkpoint(name) == path
    net, payload = load_checkpoint(path)
    assert "optimizer" not in payload.get("train_state", {})  # zoo files carry no resume-only state
    assert {"epochs", "seed", "spikecore_version", "created_utc", "float_accuracy",
            "hardware_exact_accuracy"} <= set(entry)
    assert entry["epochs"] == (20 if METHODS[name].digits is not None else METHODS[name].epochs)
    assert entry["seed"] == 0
    # better than chance by far (the weakest, the dual-stream DSNN of this small net, is about 0.6)
    assert entry["float_accuracy"] > 0.5 and entry["hardware_exact_accuracy"] > 0.5


@pytest.mark.parametrize("name", list(METHODS))
def test_shipped_checkpoint_compiles_and_golden_equals_simulator(name, methods_arch):
    from spikecore.accel.flows.verify import verify

    net = methods.prepare(name, api.load_network(pretrained_checkpoint(name)))
    program = api.compile(net, methods_arch)
    images, labels = api.load_images(SIM_IMAGES)
    _, runs = api.simulate(program, methods_arch, images, labels, results=True)
    check, golden = verify(program, methods_arch, images, None, runs)
    assert check["bit_exact"], check["mismatches"][:3]
    assert sum(int(s.sum()) for s in golden["spikes"]) > 0  # the network is active: the comparison is not vacuous


@pytest.mark.parametrize("name", ["mlf-k2", "sew-xor", "dst-dsnn"])
def test_manifest_accuracies_are_what_the_checkpoints_give(name, manifest, methods_arch):
    """The recorded float and hardware-exact accuracies are reproduced on the whole test set."""
    from spikecore.accel.flows.verify import float_gap, run_golden

    net = methods.prepare(name, api.load_network(pretrained_checkpoint(name)))
    program = api.compile(net, methods_arch)
    images, labels = api.load_images()
    gap = float_gap(net, program, run_golden(program, methods_arch, images), images, labels)
    assert gap["float_accuracy"] == manifest[name]["float_accuracy"]
    assert gap["hardware_exact_accuracy"] == manifest[name]["hardware_exact_accuracy"]


@pytest.mark.parametrize("name", DEMO_METHODS)
def test_demo_method_pretrained_end_to_end_on_the_rtl(name, tmp_path, capsys, manifest):
    out = tmp_path / "demo"
    assert main(["demo", "--method", name, "--pretrained", "--out", str(out), "--samples", "2", "--quiet"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["bit_exact"] is True and summary["cycle_exact"] is True and summary["verified_samples"] == 2
    assert summary["method"] == name and summary["pretrained"] is True
    from spikecore.accel.flows.outputs import content_digest

    shipped = SHIPPED / manifest[name]["file"]
    assert summary["inputs"]["checkpoint"] == {"path": str(shipped), "sha256": content_digest(shipped)}
    assert summary["float_accuracy"] == manifest[name]["float_accuracy"]
    assert summary["hardware_exact_accuracy"] == manifest[name]["hardware_exact_accuracy"]
    assert not (out / "train").exists()  # nothing was trained
    text = capsys.readouterr().out
    assert f"using the shipped {name} checkpoint" in text and "bit_exact                True" in text


def _damaged_zoo(tmp_path, name="sew-add") -> Path:
    zoo = tmp_path / "zoo"
    shutil.copytree(zoo_dir(), zoo)
    path = zoo / f"{name}.pt"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    return zoo


def test_a_damaged_zoo_file_is_one_line_naming_it_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    zoo = _damaged_zoo(tmp_path)
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    out = tmp_path / "out"
    assert main(["demo", "--method", "sew-add", "--pretrained", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{zoo / 'sew-add.pt'}: damaged" in err and "SHA-256" in err
    assert not out.exists()
    # the other methods of that zoo are intact; the shipped zoo was not touched
    assert pretrained_checkpoint("sew-or", zoo) == zoo / "sew-or.pt"
    monkeypatch.delenv(ZOO_ENV)
    assert pretrained_checkpoint("sew-add") == zoo_dir() / "sew-add.pt"
    with pytest.raises(UserError, match="damaged"):
        pretrained_checkpoint("sew-add", zoo)


def test_a_missing_zoo_file_or_entry_is_one_line(tmp_path, capsys, monkeypatch):
    zoo = tmp_path / "zoo"
    shutil.copytree(zoo_dir(), zoo)
    (zoo / "lsn.pt").unlink()
    monkeypatch.setenv(ZOO_ENV, str(zoo))
    assert main(["demo", "--method", "lsn", "--pretrained", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{zoo / 'lsn.pt'}: the pretrained checkpoint of method 'lsn' is missing" in err
    (zoo / "manifest.json").write_text(json.dumps({"format": "spikecore-model-zoo", "version": 1, "methods": {}}))
    assert main(["demo", "--method", "lsn", "--pretrained", "--out", str(tmp_path / "b")]) == 2
    assert "no pretrained checkpoint of method 'lsn'" in capsys.readouterr().err
    (zoo / "manifest.json").write_text("{not json")
    assert main(["demo", "--method", "lsn", "--pretrained", "--out", str(tmp_path / "c")]) == 2
    assert f"{zoo / 'manifest.json'}: not a readable model-zoo manifest" in capsys.readouterr().err
    assert not any((tmp_path / d).exists() for d in "abc")


def test_pretrained_with_epochs_is_refused(tmp_path, capsys):
    assert main(["demo", "--method", "mlf-k1", "--pretrained", "--epochs", "2", "--out", str(tmp_path / "o")]) == 2
    assert "--epochs trains the method; --pretrained uses its shipped checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_list_methods_shows_each_pretrained_checkpoint_and_its_accuracy(capsys, manifest, tmp_path,
                                                                         monkeypatch):
    assert main(["demo", "--list-methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == list(METHODS)
    for line, name in zip(lines, METHODS):
        entry = manifest[name]
        assert (f"pretrained {100 * entry['float_accuracy']:.1f}% "
                f"(hw {100 * entry['hardware_exact_accuracy']:.1f}%)") in line, line
    monkeypatch.setenv(ZOO_ENV, str(_damaged_zoo(tmp_path, "lsn")))
    assert main(["demo", "--list-methods"]) == 0
    listed = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()}
    assert "file damaged" in listed["lsn"] and "file damaged" not in listed["sew-add"]
    monkeypatch.setenv(ZOO_ENV, str(tmp_path / "empty"))
    assert main(["demo", "--list-methods"]) == 0
    assert all("not pretrained" in line for line in capsys.readouterr().out.splitlines())


def _words(path: Path) -> str:
    return " ".join(path.read_text().split())


def test_readme_lists_exactly_the_pretrained_methods(manifest):
    text = _words(ROOT / "README.md")
    found = re.search(r"Methods with a pretrained checkpoint: ([^.]+)\.", text)
    assert found, "README.md: no 'Methods with a pretrained checkpoint: ...' sentence"
    listed = [item.strip().strip("`") for item in found.group(1).split(",")]
    assert listed == list(manifest)
    assert "no method checkpoints are shipped" not in text.lower()
    assert "--pretrained` is the shipped digits network only" not in text


def test_constructs_doc_accuracy_table_equals_the_manifest(manifest):
    text = (ROOT / "docs" / "constructs.md").read_text()
    rows = re.findall(r"^\| `([a-z0-9-]+)` \| (\d+) \| ([\d.]+) % \| ([\d.]+) % \|", text, re.MULTILINE)
    assert [row[0] for row in rows] == list(manifest)
    for name, epochs, float_pct, hw_pct in rows:
        entry = manifest[name]
        assert int(epochs) == entry["epochs"], name
        assert float_pct == f"{100 * entry['float_accuracy']:.2f}", name
        assert hw_pct == f"{100 * entry['hardware_exact_accuracy']:.2f}", name
    assert "No method checkpoints are shipped" not in text
