"""The installation's contract (docs/install.md), read from the files alone, without installing anything.

pyproject.toml declares ranges and the extras (events, peers, test); scripts/install.sh pins the exact versions CI
tests, each inside pyproject.toml's range; CI runs `pip check` and exactly the README's test command.
"""
import re
import tomllib
from pathlib import Path

import pytest
from packaging import requirements

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
INSTALL = (ROOT / "scripts" / "install.sh").read_text()
CI = (ROOT / ".ci" / "run").read_text()
README = (ROOT / "README.md").read_text()


def _requirements(strings):
    return [requirements.Requirement(s) for s in strings]


def _install_array(name):
    """The words of the bash array ``name=( ... )`` in scripts/install.sh, without comments."""
    match = re.search(rf"^{name}=\((.*?)\)", INSTALL, re.S | re.M)
    assert match, f"scripts/install.sh has no array {name}"
    words = " ".join(line.split("#")[0] for line in match.group(1).splitlines()).split()
    return [w.strip('"') for w in words]


def test_runtime_dependencies_are_ranges_not_exact_pins():
    pinned = [str(r) for r in _requirements(PROJECT["dependencies"])
              if any(spec.operator in ("==", "===") for spec in r.specifier)]
    assert not pinned, f"pyproject.toml pins exact versions (they belong in scripts/install.sh): {pinned}"


def test_torch_is_a_range_that_admits_the_pinned_build():
    torch = [r for r in _requirements(PROJECT["dependencies"]) if r.name == "torch"]
    assert torch and torch[0].specifier.contains("2.4.0") and torch[0].specifier.contains("2.13.0")


@pytest.mark.parametrize("extra, packages", [
    ("events", {"tonic", "h5py"}),
    ("peers", {"spikingjelly", "snntorch", "nirtorch"}),
    ("test", {"pytest", "hypothesis"}),
])
def test_extras_are_declared(extra, packages):
    extras = PROJECT.get("optional-dependencies", {})
    assert extra in extras, f"pyproject.toml has no [{extra}] extra"
    names = {r.name.lower() for r in _requirements(extras[extra])}
    assert packages <= names, f"[{extra}] lacks {sorted(packages - names)}"
    pinned = [str(r) for r in _requirements(extras[extra]) if any(s.operator in ("==", "===") for s in r.specifier)]
    assert not pinned, f"[{extra}] pins exact versions: {pinned}"


def test_every_pin_of_install_sh_is_exact_and_inside_the_declared_range():
    declared = {}
    for r in _requirements(PROJECT["dependencies"] + sum(PROJECT["optional-dependencies"].values(), [])):
        declared.setdefault(r.name.lower().replace("_", "-"), []).append(r.specifier)
    pins = _requirements(_install_array("pins") + _install_array("side"))
    assert {"torch", "tonic", "spikingjelly", "snntorch", "nirtorch"} <= {p.name.lower() for p in pins}
    for pin in pins:
        (spec,) = pin.specifier
        assert spec.operator == "==", f"scripts/install.sh installs {pin} unpinned"
        for allowed in declared.get(pin.name.lower().replace("_", "-"), []):
            assert allowed.contains(spec.version, prereleases=True), f"{pin} is outside pyproject.toml's {allowed}"


def test_ci_runs_pip_check_and_exactly_the_readme_test_command():
    setup = README.split("## Set-up", 1)[1].split("\n## ", 1)[0]
    commands = [line.split("#")[0].strip() for line in re.findall(r"```sh\n(.*?)```", setup, re.S)[0].splitlines()]
    test_command = [c for c in commands if "pytest" in c]
    assert len(test_command) == 1, commands
    ci_lines = [line.strip() for line in CI.splitlines()]
    assert test_command[0] in ci_lines, f"CI does not run the README's test command {test_command[0]!r}"
    assert any(re.search(r"-m pip check\b", line) for line in ci_lines if not line.startswith("#")), \
        "CI does not run pip check"
