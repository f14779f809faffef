"""The ``>>>`` examples in the docstrings of the runtime and of the learning math run, as tests.

Not ``pytest --doctest-modules``: that imports a file by its folder, and the folder ``pipelines/``
installs as the package ``routing_pipelines``, so the learning modules would be imported a second
time under a name nothing else uses. Here every module is imported by its package name, one test
per docstring that has examples. Modules that need Dagster or a home at import time are not in
these two packages (the layout tests keep it so).
"""

from __future__ import annotations

import doctest
import importlib
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: Package name -> the folder it is installed from.
PACKAGES = {
    "routing_runtime": REPO / "routing_runtime",
    "routing_runtime.integrations": REPO / "routing_runtime" / "integrations",
    "routing_pipelines.learning": REPO / "pipelines" / "learning",
}
#: Public functions whose docstring shows how to call them; an example deleted fails here.
DOCUMENTED = {
    "routing_runtime.classifier": ["classify_task"],
    "routing_runtime.safe_fs": ["safe_name", "display_name"],
    "routing_runtime.home": ["resolve_home", "db_path"],
    "routing_runtime.faults": ["crashpoint"],
    "routing_runtime.types": ["parse_enum", "outcome_for_quality"],
    "routing_runtime.integrations.sdk": ["usage_of", "list_price_usd", "track_call"],
}
OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def module_names() -> list[str]:
    return [package if path.stem == "__init__" else f"{package}.{path.stem}"
            for package, folder in PACKAGES.items() for path in sorted(folder.glob("*.py"))]


def docstring_examples() -> list:
    """One param per docstring with examples; a module whose extra is not installed is skipped."""
    params = []
    finder = doctest.DocTestFinder(exclude_empty=True)
    for name in module_names():
        try:
            module = importlib.import_module(name)
        except ImportError as exc:  # the runtime-only install has no polars for the learning math
            params.append(pytest.param(None, id=name, marks=pytest.mark.skip(reason=f"{name}: {exc}")))
            continue
        params += [pytest.param(test, id=test.name) for test in finder.find(module, name) if test.examples]
    return params


@pytest.mark.parametrize("test", docstring_examples())
def test_docstring_examples_pass_and_leave_no_temporary_homes_behind(
    test: doctest.DocTest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
):
    # An example that makes a home in the temporary folder removes it: readers copy the examples.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    runner.run(test, out=report.append, clear_globs=True)
    assert runner.failures == 0, "".join(report)
    assert not list(tmp_path.iterdir()), f"{test.name} left {sorted(p.name for p in tmp_path.iterdir())} behind"


@pytest.mark.parametrize("module, names", DOCUMENTED.items())
def test_public_functions_have_runnable_examples(module: str, names: list[str]):
    found = {t.name.rsplit(".", 1)[-1] for t in doctest.DocTestFinder().find(importlib.import_module(module), module)
             if any(not e.options.get(doctest.SKIP) for e in t.examples)}
    assert set(names) <= found, f"{module}: no runnable >>> example in {sorted(set(names) - found)}"


def test_a_failing_example_fails():
    # The runner is not vacuous: a wrong expectation is reported as a failure.
    test = doctest.DocTestParser().get_doctest(">>> 1 + 1\n3\n", {}, "probe", None, 0)
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    runner.run(test, out=lambda _: None)
    assert runner.failures == 1
