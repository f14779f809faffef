"""`routing ui` in a real headless browser: scripts/check_ui.py end to end (about 70 s).

Skipped when Chromium or chromedriver is not on PATH (Debian: apt-get install chromium
chromium-driver) or when the pipeline extra is not installed.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

pytest.importorskip("dagster_webserver")

CHECK_UI = PROJECT_ROOT / "scripts" / "check_ui.py"


def test_ui_shows_the_asset_graph_job_runs_and_materializes_the_rules_in_headless_chromium(tmp_path: Path):
    missing = [tool for tool in ("chromium", "chromedriver") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not on PATH (apt-get install chromium chromium-driver)")
    done = subprocess.run([sys.executable, str(CHECK_UI), "--screenshots", str(tmp_path)],
                          capture_output=True, text=True, timeout=360, cwd=tmp_path)
    assert done.returncode == 0, f"check_ui.py failed:\n{done.stdout}\n{done.stderr}"
    for checked in ("schedule nightly_learning_0200_utc", "draws all 8 assets", "upstream of model_routing_rules",
                    "model_performance (logs)", "Routing demo",
                    # The runs `routing learn` made are on the job's page, not only under Runs.
                    "runs of nightly_learning made by `routing learn`",
                    # Materialize from the asset page works and the new event names its rule set.
                    "clicked Materialize", ": SUCCESS after", "shows rule_set_version",
                    "exited 0", "PASS"):
        assert checked in done.stdout, f"{checked!r} not reported:\n{done.stdout}"
    for png in ("ui-asset-graph.png", "ui-job-runs.png", "ui-rules-materialized.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
