"""Importing the runtime must not pull in the pipeline's heavy dependencies."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("dagster", "polars", "pyarrow", "scipy", "numpy", "pandas", "psycopg2", "sqlalchemy", "litellm", "openai", "httpx")

PROBE = """
import json, sys
{before}
import routing_runtime
from routing_runtime import ModelRouter, classify_task, cli  # the whole public surface
from routing_runtime.integrations.sdk import track_call  # the plain-SDK path is stdlib too
classify_task("Write pytest tests for parse_date()")
heavy = sorted({{name.split(".")[0] for name in sys.modules}} & set(json.loads(sys.argv[1])))
print(json.dumps(heavy))
"""


def probe(tmp_path, before: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", PROBE.format(before=before), json.dumps(HEAVY)],
        capture_output=True, text=True, cwd=tmp_path, timeout=60,
    )


def test_import_routing_runtime_imports_no_heavy_dependency(tmp_path):
    proc = probe(tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def test_probe_detects_a_heavy_import(tmp_path):
    # The probe is not vacuous: a heavy module imported in the same process is reported.
    proc = probe(tmp_path, before="import numpy")
    if proc.returncode != 0 and "No module named 'numpy'" in proc.stderr:
        pytest.skip("numpy is not installed here")
    assert proc.returncode == 0, proc.stderr
    assert "numpy" in json.loads(proc.stdout)
