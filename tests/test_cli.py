"""The ``routing`` command line, end to end in subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import count_rows
from routing_runtime import ModelRegistry, RoutingPreference, TaskType

N_MODELS = len(ModelRegistry.load_default().models)
MODEL_KEYS = {
    "model_id", "priority", "selection_probability", "expected_quality", "expected_cost_usd",
    "expected_latency_ms", "is_specialized",
}


def run(args, *, home=None, env_home=None, cwd):
    """Run ``routing ARGS`` (``--home`` when ``home`` is given, $ROUTING_HOME = ``env_home``)."""
    env = {k: v for k, v in os.environ.items() if k != "ROUTING_HOME"}
    if env_home is not None:
        env["ROUTING_HOME"] = str(env_home)
    argv = [sys.executable, "-m", "routing_runtime.cli", *args]
    if home is not None:
        argv += ["--home", str(home)]
    return subprocess.run(argv, capture_output=True, text=True, env=env, cwd=cwd, timeout=60)


@pytest.fixture(params=["--home", "ROUTING_HOME"])
def routing(request, tmp_path):
    """``routing(*args)`` against one temp home, passed by --home or by the environment variable."""
    home = tmp_path / "cli-home"
    workdir = tmp_path / "workdir"
    workdir.mkdir()

    def call(*args):
        if request.param == "--home":
            return run(list(args), home=home, cwd=workdir)
        return run(list(args), env_home=home, cwd=workdir)

    call.home = home
    call.workdir = workdir
    return call


def test_end_to_end(routing):
    home = routing.home
    init = routing("init")
    assert init.returncode == 0, init.stderr
    assert "v1" in init.stdout and "published" in init.stdout
    assert (home / "routing.db").is_file()
    assert not (routing.workdir / ".routing").exists(), "the home given must be used, not ./.routing"

    again = routing("init")
    assert again.returncode == 0, again.stderr
    assert "v1" in again.stdout and "unchanged" in again.stdout

    text = routing("select", "Write a Python function that parses ISO-8601 dates")
    assert text.returncode == 0, text.stderr
    assert "model:" in text.stdout
    model_line = next(line for line in text.stdout.splitlines() if line.startswith("model:"))
    assert model_line.split(":", 1)[1].strip() in {m.id for m in ModelRegistry.load_default().models}
    assert "code_generation" in text.stdout

    as_json = routing("select", "Why does my Flask app crash with KeyError on startup?", "--json",
                      "--preference", "quality")
    assert as_json.returncode == 0, as_json.stderr
    decision = json.loads(as_json.stdout)
    for key in ("decision_id", "model_id", "task_type", "alternatives", "propensity", "rule_set_version"):
        assert key in decision
    assert decision["task_type"] == "debugging"
    assert decision["preference"] == "quality"
    assert isinstance(decision["alternatives"], list) and decision["model_id"] not in decision["alternatives"]
    assert 0 < decision["propensity"] <= 1
    assert decision["rule_set_version"] == 1

    math = routing("select", "anything at all", "--task", "math", "--json")
    assert math.returncode == 0, math.stderr
    assert json.loads(math.stdout)["task_type"] == "math"

    recorded = routing("record", decision["decision_id"], "success", "--quality", "0.9",
                       "--latency-ms", "850", "--tokens", "1200", "--cost-usd", "0.002")
    assert recorded.returncode == 0, recorded.stderr
    assert recorded.stdout.strip()
    assert count_rows(home, "routing_decisions") == 3
    assert count_rows(home, "model_performance") == 1

    bad = routing("record", decision["decision_id"], "success", "--quality", "1.5")
    assert bad.returncode == 2
    assert bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1, bad.stderr
    assert "quality_score" in lines[0]
    assert count_rows(home, "model_performance") == 1


@pytest.mark.parametrize("args, field", [
    (["record", "{decision}", "success", "--tokens", "-5"], "tokens_used"),
    (["record", "{decision}", "partial", "--latency-ms", "-1"], "latency_ms"),
    (["record", "{decision}", "failure", "--cost-usd", "nan"], "cost_usd"),
    (["record", "no-such-decision", "success"], "decision_id"),
    (["select", "hello", "--exclude", "codestral-2508", "--exclude", "qwen2.5-math-72b-instruct",
      "--exclude", "claude-sonnet-4-5", "--exclude", "gpt-4o", "--exclude", "claude-haiku-4-5",
      "--exclude", "gpt-4o-mini", "--exclude", "deepseek-chat"], "exclude"),
])
def test_bad_input_exit_code_2_and_one_line_error(tmp_path, args, field):
    home = tmp_path / "h"
    assert run(["init"], home=home, cwd=tmp_path).returncode == 0
    decision = json.loads(run(["select", "x", "--task", "math", "--json"], home=home, cwd=tmp_path).stdout)
    args = [a.replace("{decision}", decision["decision_id"]) for a in args]
    before = (count_rows(home, "routing_decisions"), count_rows(home, "model_performance"))
    proc = run(args, home=home, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert field in lines[0]
    assert (count_rows(home, "routing_decisions"), count_rows(home, "model_performance")) == before


def test_argparse_rejects_unknown_choices_with_exit_2(tmp_path):
    home = tmp_path / "h"
    assert run(["init"], home=home, cwd=tmp_path).returncode == 0
    proc = run(["select", "x", "--preference", "fastest"], home=home, cwd=tmp_path)
    assert proc.returncode == 2
    assert "preference" in proc.stderr
    proc = run(["record", "abc", "great"], home=home, cwd=tmp_path)
    assert proc.returncode == 2
    assert "outcome" in proc.stderr


def test_rules_json_shape(routing):
    assert routing("init").returncode == 0
    proc = routing("rules", "--json")
    assert proc.returncode == 0, proc.stderr
    document = json.loads(proc.stdout)
    # The keys README.md documents ("`routing rules --json`"); extra keys are additions.
    assert {"rule_set_version", "as_of", "rules"} <= set(document)
    assert document["rule_set_version"] == 1
    assert document["as_of"] is None  # registry rules: no evidence day yet
    rules = document["rules"]
    assert len(rules) == 8 * 4
    assert {(r["task_type"], r["preference"]) for r in rules} == {
        (t.value, p.value) for t in TaskType for p in RoutingPreference
    }
    for rule in rules:
        assert {"task_type", "preference", "models"} <= set(rule)
        assert len(rule["models"]) == N_MODELS
        assert [m["priority"] for m in rule["models"]] == list(range(1, N_MODELS + 1))
        for m in rule["models"]:
            assert MODEL_KEYS <= set(m)
            assert isinstance(m["model_id"], str)
            assert isinstance(m["priority"], int) and not isinstance(m["priority"], bool)
            assert isinstance(m["is_specialized"], bool)
            for key in ("selection_probability", "expected_quality", "expected_cost_usd", "expected_latency_ms"):
                assert isinstance(m[key], (int, float)) and not isinstance(m[key], bool)
            assert 0 <= m["selection_probability"] <= 1
        assert sum(m["selection_probability"] for m in rule["models"]) == pytest.approx(1.0, abs=1e-5)

    filtered = json.loads(routing("rules", "--json", "--task", "math", "--preference", "latency").stdout)
    assert [(r["task_type"], r["preference"]) for r in filtered["rules"]] == [("math", "latency")]


def test_rules_table_mentions_every_task_type(routing):
    assert routing("init").returncode == 0
    proc = routing("rules")
    assert proc.returncode == 0, proc.stderr
    assert "v1" in proc.stdout
    for task in TaskType:
        assert task.value in proc.stdout
    for preference in RoutingPreference:
        assert preference.value in proc.stdout


@pytest.mark.parametrize("command", [["select", "hello"], ["rules"], ["record", "abc", "success"]])
def test_uninitialised_home_fails_with_hint(routing, command):
    proc = routing(*command)
    assert proc.returncode == 2
    assert "routing init" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (routing.home / "routing.db").exists()
    assert not (routing.workdir / ".routing").exists()


def test_installed_console_script(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "routing")
    if not os.path.exists(script):
        pytest.skip("the `routing` console script is not installed next to this interpreter")
    home = tmp_path / "h"
    proc = subprocess.run([script, "init", "--home", str(home)], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([script, "select", "2 + 2 = ?", "--home", str(home), "--json"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["model_id"]


def test_status_reports_rules_logs_and_inbox(tmp_path):
    import json as _json

    from routing_runtime.cli import main as routing

    home = tmp_path / "status-home"
    assert routing(["init", "--home", str(home)]) == 0
    assert routing(["select", "--home", str(home), "--task", "math", "x"]) == 0
    (home / "inbox" / "model_performance" / "remote.jsonl").write_text("{}\n")
    (home / "inbox" / "model_performance" / ".partial.jsonl").write_text("{}\n")
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert routing(["status", "--home", str(home), "--json"]) == 0
    status = _json.loads(out.getvalue())
    assert status["rule_set"]["version"] == 1 and status["rule_set"]["source"] == "registry"
    assert status["learned_through"] is None
    assert status["logs"]["routing_decisions"]["rows"] == 1 and status["logs"]["model_performance"]["rows"] == 0
    assert status["inbox"] == {"routing_decisions": 0, "model_performance": 1}
    assert routing(["status", "--home", str(tmp_path / "nowhere")]) == 2


def test_status_counts_low_confidence_classifications(routing):
    """Issue 12: a low-confidence classification is visible in the decision and countable in
    `routing status`; a task type given with --task is not a classification at all."""
    assert routing("init").returncode == 0
    confident = json.loads(routing("select", "Write pytest unit tests for parse_date()", "--json").stdout)
    assert confident["classification"]["confidence"] >= 0.6
    assert confident["selection_reason"].endswith(f"; classified: testing {confident['classification']['confidence']:.2f}")
    # Words the model has never seen: nothing to go on, so `general` at 0.5, below the 0.6 line.
    unsure = json.loads(routing("select", "zxqv blorft", "--json").stdout)
    assert unsure["task_type"] == "general" and unsure["classification"]["confidence"] == 0.5
    assert unsure["selection_reason"].endswith("; classified (low confidence): general 0.50")
    assert routing("select", "x", "--task", "math").returncode == 0

    status = json.loads(routing("status", "--json").stdout)
    assert status["classified_decisions"] == {"classified": 2, "low_confidence": 1, "low_confidence_below": 0.6}
    text = routing("status").stdout
    assert "classified:        2 decisions from prompt text, 1 with low confidence (50.0%) (below 0.6)" in text
