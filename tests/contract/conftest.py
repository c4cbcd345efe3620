"""Parametrizes the contract suite's tests: ``case`` by the test class's cases (its ``slow_cases`` marked slow),
``field`` by the fields its implementation and that field's reference both report."""
import pytest

from .implementations import compared_fields


def pytest_generate_tests(metafunc):
    cls = metafunc.cls
    implementation = getattr(cls, "implementation", None) if cls is not None else None
    if implementation is None:
        return
    if "case" in metafunc.fixturenames:
        params = [pytest.param(case, id=case) for case in cls.cases]
        params += [pytest.param(case, id=case, marks=pytest.mark.slow) for case in cls.slow_cases]
        metafunc.parametrize("case", params)
    if "field" in metafunc.fixturenames:
        metafunc.parametrize("field", compared_fields(implementation))


@pytest.fixture(scope="session")
def contract_workdir(rtl_cache):
    """The RTL build cache, shared with the other RTL tests of the session (one build per core)."""
    return rtl_cache / "rtl"
