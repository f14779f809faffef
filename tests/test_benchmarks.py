"""Every benchmark still runs: its ``--quick`` mode (tiny sizes, seconds) through ``run_all.py``,
as ``make bench`` runs the real one, so a change that breaks a benchmark fails here instead of
leaving stale figures in BENCHMARKS.md. The figures of a quick run mean nothing and are not
checked; that each benchmark printed its table and report section is.

The report goes to a temporary file: BENCHMARKS.md is never written by the tests.
"""

from __future__ import annotations

import hashlib
import json
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SHARED_DATA

REPO = Path(__file__).resolve().parents[1]
RUN_ALL = REPO / "benchmarks" / "run_all.py"
REPORT = REPO / "BENCHMARKS.md"

#: Benchmark -> (extra modules it needs, lines its report must hold).
EXPECTED = {
    "runtime": ((), ["| select_model(TaskType, preference), 32 combinations |", "| record_performance(decision_id",
                     "| classify_task(prompt 8,"]),
    "scale": (("dagster", "polars"), ["| full learn (`--as-of", "| incremental learn (`--as-of",
                                      "- ok: incremental: ingests only the new day"]),
    "replay": (("polars",), ["| overall |", "router's last rule set", "## Replay benchmark (Open LLM Leaderboard v2 outcomes",
                             "## Replay benchmark (RouteLLM's GSM8K and MMLU answers", "## Replay benchmark (routerbench_mini"]),
    "scenarios": (("dagster", "polars"), ["| drift | this router", "| drift | plain batched Thompson sampling",
                                          "* drift, day 2:"]),
    "fleet": (("dagster", "polars", "pyarrow"), ["| with sync shipping every 1 s |", "| one `routing sync` shipping a backlog |",
                                                 "| hosts serving it before their loop ended | 2 of 2 |"]),
    "estimators": (("polars", "scipy"), ["| quality (quality) | doubly robust |", "| quality_per_usd (balanced) | SNIPS |",
                                         "Targets (the issue: median relative error ≤ 2%",
                                         "5 replicates, the issue asks for at least 200"]),
    "gate": (("dagster", "polars"), ["| drift | 1 | 3 |", "| **total** | 1 | 3 |", "- target 0 false blocks over 1 seed:",
                                     "Closest call per scenario"]),
    "litellm": (("litellm",), ["| sync `completion()`, decision and outcome committed |",
                               "| select_model(within=…), decision committed |", "- target ≤ 0.3 ms added per completion"]),
    "classifier": ((), ["**Held out, all sources**", "Mean of the per-type recalls", "| dataset:mbpp |",
                        "Confusion on the held-out prompts", "- held out: "]),
}
#: Benchmarks that read the real data in ../shared/data, and skip cleanly without it.
NEEDS_SHARED_DATA = {"replay"}


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def run_all(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(RUN_ALL), *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("name", EXPECTED)
def test_quick_mode_runs_and_reports_its_figures(name: str, tmp_path: Path):
    needs, lines = EXPECTED[name]
    if _missing(needs):
        pytest.skip(f"bench {name} needs the [pipeline] extra ({', '.join(_missing(needs))} missing)")
    report = tmp_path / "BENCHMARKS.md"
    before = _digest(REPORT)

    proc = run_all("--quick", "--only", name, "--output", str(report))

    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert _digest(REPORT) == before, "a quick run must not rewrite BENCHMARKS.md"
    section = re.search(rf"<!-- bench:{name} -->.*?<!-- /bench:{name} -->", report.read_text(encoding="utf-8"), re.S)
    assert section, report.read_text(encoding="utf-8")
    text = section.group(0)
    assert "Quick smoke run" in text
    if name in NEEDS_SHARED_DATA and not SHARED_DATA.is_dir():
        # A user's clone has no ../shared/data: the replay says it measured nothing, and why.
        assert ", skipped" in text and "Skipped: the real data in `../shared/data` is absent" in text
        return
    assert ", exit 0" in text
    missing = [line for line in lines if line not in text]
    assert not missing, f"bench {name} did not print {missing}:\n{text}"


def test_replay_without_the_shared_data_skips_cleanly(tmp_path: Path):
    if _missing(("polars",)):
        pytest.skip("bench_replay needs polars")
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_replay.py"), "--quick", "--data", str(tmp_path / "absent")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("SKIP bench_replay: real outcome data not found at "), proc.stdout
    assert str(tmp_path / "absent") in proc.stdout


def test_explicit_sizes_win_over_quick(tmp_path: Path):
    # --quick replaces the defaults, not what is asked for: `--quick --n 300` times 300 calls.
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_runtime.py"), "--quick", "--n", "300", "--import-runs", "0"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "n=300 per operation in 2 interleaved blocks after 20 warm-up calls" in proc.stdout


def test_classifier_without_the_shared_data_runs_on_the_shipped_prompts(tmp_path: Path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_classifier.py"), "--quick", "--data", str(tmp_path / "absent")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert f"The shared data was not found at {tmp_path / 'absent'}: GSM8K, MMLU and MT-Bench are left out." in proc.stdout
    assert "dataset:gsm8k" not in proc.stdout and "dataset:mmlu" not in proc.stdout and "| dataset:mbpp |" in proc.stdout
    assert "prompts referenced without their text (GitHub issues, Q&A pages) are left out: pass --texts to count them." in proc.stdout


def _scenarios(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / "bench_scenarios.py"), "--quick", "--scenarios", "drift", *args],
                          cwd=REPO, capture_output=True, text=True, timeout=timeout)


def test_scenarios_learn_with_the_learning_settings_of_another_registry(tmp_path: Path):
    if _missing(("dagster", "polars")):
        pytest.skip("bench_scenarios needs the [pipeline] extra")
    shipped = (REPO / "routing_runtime" / "default_registry.toml").read_text(encoding="utf-8")
    stable = re.sub(r"(?m)^always_explored = 0 ", "always_explored = 8 ", shipped)
    stable = re.sub(r"(?m)^steady_half_life_days = 180 ", "steady_half_life_days = 30 ", stable)
    assert "always_explored = 8 " in stable and "steady_half_life_days = 30 " in stable
    registry = tmp_path / "stable.toml"
    registry.write_text(stable, encoding="utf-8")
    figures = tmp_path / "figures.json"

    proc = _scenarios("--learning-from", str(registry), "--json", str(figures))

    assert proc.returncode == 0, proc.stderr[-4000:]
    assert (f"The router learned with the [learning] settings of {registry}: steady_half_life_days 30 (shipped 180), "
            "always_explored 8 (shipped 0).") in proc.stdout
    learning = json.loads(figures.read_text(encoding="utf-8"))["settings"]["router_learning"]
    assert learning["always_explored"] == 8 and learning["steady_half_life_days"] == 30.0


@pytest.mark.parametrize("content, says", [
    (None, "cannot read registry file"),
    ("x = [", "not valid TOML"),
    ("[learning]\nmin_best_probability = 0.9\n", "min_best_probability"),
])
def test_scenarios_refuse_a_bad_learning_registry_naming_it(tmp_path: Path, content: str | None, says: str):
    registry = tmp_path / "learning.toml"
    if content is not None:
        registry.write_text(content, encoding="utf-8")
    proc = _scenarios("--learning-from", str(registry), timeout=60)
    assert proc.returncode == 2
    assert f"--learning-from {registry}: " in proc.stderr and says in proc.stderr, proc.stderr
