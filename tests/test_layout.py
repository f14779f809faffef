"""The package layout: what a runtime-only install puts into site-packages, and the one-way
import direction runtime ← learning math ← Dagster definitions."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info/ beside the sources it builds.
    source = tmp_path_factory.mktemp("source") / "repo"
    skip = shutil.ignore_patterns(".git", ".venv", "build", "*.egg-info", ".bench-*", "__pycache__", ".routing*")
    shutil.copytree(REPO, source, ignore=skip)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    if proc.returncode != 0 and "No module named" in proc.stderr:
        pytest.skip(f"cannot build a wheel here: {proc.stderr.strip().splitlines()[-1]}")
    assert proc.returncode == 0, proc.stderr
    (built,) = out.glob("*.whl")
    return zipfile.ZipFile(built)


def test_runtime_only_install_puts_no_assets_or_pipelines_package_in_site_packages(wheel):
    tops = {name.split("/")[0] for name in wheel.namelist() if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"routing_runtime", "routing_pipelines"}
    assert "routing_pipelines/assets/learning_assets.py" in wheel.namelist()
    assert "routing_pipelines/simulation/scenarios/drift.toml" in wheel.namelist()
    assert {"routing_runtime/integrations/litellm.py", "routing_runtime/integrations/sdk.py"} <= set(wheel.namelist())
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith("METADATA"))).decode()
    base = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert base == [], f"the base install must need nothing beyond the standard library: {base}"
    # `pip install '.[litellm]'` is all the LiteLLM integration needs.
    assert any(line.startswith("Requires-Dist: litellm") and 'extra == "litellm"' in line for line in metadata.splitlines())


def _imports(path: Path) -> set[str]:
    """Modules a file imports at module level (not inside functions: those are lazy entry points)."""
    tree = ast.parse(path.read_text())
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def _modules(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


@pytest.mark.parametrize("path", _modules("routing_runtime"), ids=lambda p: str(p.relative_to(REPO)))
def test_runtime_imports_nothing_of_the_learning_half(path):
    bad = {m for m in _imports(path) if m.split(".")[0] in {"routing_pipelines", "dagster", "polars", "numpy", "scipy", "pyarrow"}}
    assert not bad, f"{path.name} imports {sorted(bad)} at module level"


@pytest.mark.parametrize("path", _modules("routing_runtime"), ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_litellm_integration_imports_litellm(path):
    # `import routing_runtime` (and the plain-SDK path) must work without the [litellm] extra.
    if path == REPO / "routing_runtime" / "integrations" / "litellm.py":
        return
    assert not {m for m in _imports(path) if m.split(".")[0] in {"litellm", "openai"}}, path.name


@pytest.mark.parametrize("path", _modules("pipelines/learning"), ids=lambda p: str(p.relative_to(REPO)))
def test_learning_math_never_imports_dagster(path):
    dagster_layer = ("routing_pipelines.assets", "routing_pipelines.definitions", "routing_pipelines.resources", "routing_pipelines.learn")
    bad = {m for m in _imports(path) if m.split(".")[0] == "dagster" or any(m == d or m.startswith(d + ".") for d in dagster_layer)}
    assert not bad, f"{path.name} imports {sorted(bad)}: the learning math takes frames, never a Dagster context"


def test_no_module_imports_the_old_top_level_names():
    offenders = [
        f"{p.relative_to(REPO)}: {m}"
        for folder in ("routing_runtime", "pipelines", "assets", "tests", "benchmarks", "scripts")
        for p in _modules(folder) for m in _imports(p) if m.split(".")[0] in {"pipelines", "assets"}
    ]
    assert not offenders, offenders


#: Path pieces of the lake: only the Lake (and the home's folder names) may spell them.
LAKE_PATH_PIECES = re.compile(
    r"""["'](?:lake|_staged|quarantine|current\.json|part-0\.parquet)["']"""  # the lake's folder and file names
    r"""|f["'](?:day|as_of|version)=\{[^}]*\}(?:\.parquet)?["'/]"""  # partition and value file names
    r"""|f["']\{[^}]*\}\.parquet["']"""  # any other Parquet file name built from a value
)


@pytest.mark.parametrize("folder", ["routing_runtime", "pipelines", "assets"])
def test_no_lake_path_is_built_outside_the_lake(folder):
    allowed = {REPO / "pipelines" / "lake.py", REPO / "routing_runtime" / "home.py"}
    offenders = []
    for path in _modules(folder):
        if path in allowed:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            code = line.split("#", 1)[0]
            if LAKE_PATH_PIECES.search(code):
                offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_no_run_tag_is_read_for_the_learning_day():
    # The day is run config (`LearningDay`); tags are only ever written (a partition range).
    offenders = [
        f"{p.relative_to(REPO)}: {line.strip()}"
        for folder in ("pipelines", "assets") for p in _modules(folder)
        for line in p.read_text().splitlines()
        if ".tags" in line.split("#", 1)[0] and "tags=" not in line and not line.lstrip().startswith("from ")
    ]
    assert not offenders, offenders
