"""`routing history`, `routing diff A B` and `routing rollback --to N`, end to end in temp homes."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path

from routing_runtime import ModelRouter
from routing_runtime.admin import initialise
from routing_runtime.hub import Hub
from routing_runtime.types import RoutingPreference, TaskType

SHIPPED_TOML = resources.files("routing_runtime").joinpath("default_registry.toml").read_text(encoding="utf-8")
CELLS = len(TaskType) * len(RoutingPreference)


def routing(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "routing_runtime.cli", *args], capture_output=True, text=True, timeout=120)


def two_versions(tmp_path: Path, **init) -> Path:
    """A home with v1 (the shipped registry) and v2 (the same with codestral-2508, top of the code cells, disabled)."""
    home = tmp_path / "home"
    initialise(home, **init)
    marker = 'id = "codestral-2508"'
    head, tail = SHIPPED_TOML.split(marker, 1)
    registry = tmp_path / "no-codestral.toml"
    registry.write_text(head + marker + "\nenabled = false" + tail, encoding="utf-8")
    assert initialise(home, registry).rule_set_version == 2
    return home


def test_history_lists_every_rule_set_newest_first_in_both_forms(tmp_path):
    home = two_versions(tmp_path)
    done = routing("history", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    entries = json.loads(done.stdout)
    assert [e["rule_set_version"] for e in entries] == [2, 1]
    assert all(set(e) == {"rule_set_version", "as_of", "source", "created_at", "gate"} for e in entries)
    assert [e["source"] for e in entries] == ["registry", "registry"]
    text = routing("history", "--home", str(home)).stdout
    assert text.splitlines()[1].split()[:2] == ["2", "registry"]


def test_diff_names_each_cell_whose_top_model_moved_in_both_forms(tmp_path):
    home = two_versions(tmp_path)
    done = routing("diff", "1", "2", "--home", str(home), "--json")
    assert done.returncode == 0, done.stderr
    cells = json.loads(done.stdout)["cells"]
    assert len(cells) == CELLS
    moved = [c for c in cells if c["changed"]]
    assert moved and all(c["a"]["model_id"] == "codestral-2508" and c["b"]["model_id"] != "codestral-2508" for c in moved)
    assert all(0 < c["a"]["share"] <= 1 for c in cells)
    text = routing("diff", "1", "2", "--home", str(home)).stdout
    assert f"{len(moved)} of {CELLS} cells have another top model" in text


def test_diff_of_a_version_that_does_not_exist_names_it(tmp_path):
    home = two_versions(tmp_path)
    done = routing("diff", "1", "9", "--home", str(home))
    assert done.returncode == 2 and "B=9: no such rule set version" in done.stderr


def test_rollback_publishes_a_copy_that_running_routers_serve_within_a_second(tmp_path):
    home = two_versions(tmp_path)
    with ModelRouter.open(home, seed=1) as router:
        assert router.select_model("math", "quality").rule_set_version == 2
        done = routing("rollback", "--to", "1", "--home", str(home))
        assert done.returncode == 0, done.stderr
        assert "published rule set v3, a copy of v1" in done.stdout
        deadline = time.monotonic() + 1.5
        while router.select_model("math", "quality").rule_set_version != 3:
            assert time.monotonic() < deadline, "the router did not switch within a second"
            time.sleep(0.05)
    entries = json.loads(routing("history", "--home", str(home), "--json").stdout)
    assert entries[0]["rule_set_version"] == 3 and entries[0]["source"] == "rollback"
    cells = json.loads(routing("diff", "1", "3", "--home", str(home), "--json").stdout)["cells"]
    assert not any(c["changed"] or c["a"] != c["b"] for c in cells)


def test_rollback_to_a_missing_version_publishes_nothing(tmp_path):
    home = two_versions(tmp_path)
    done = routing("rollback", "--to", "7", "--home", str(home))
    assert done.returncode == 2 and "--to=7: no such rule set version" in done.stderr
    assert [e["rule_set_version"] for e in json.loads(routing("history", "--home", str(home), "--json").stdout)] == [2, 1]


def test_rollback_on_a_learner_tied_to_a_hub_puts_the_copy_there(tmp_path):
    (tmp_path / "hub").mkdir()
    home = two_versions(tmp_path, hub=str(tmp_path / "hub"))
    assert routing("rollback", "--to", "1", "--home", str(home)).returncode == 0
    assert Hub.parse(str(tmp_path / "hub")).get_json("rules/current.json") == {"version": 3}


def test_a_host_taking_its_versions_from_the_hub_refuses_to_roll_back_alone(tmp_path):
    # Its own copy would take a number the hub gives to the learner's next version.
    (tmp_path / "hub").mkdir()
    learner = two_versions(tmp_path, hub=str(tmp_path / "hub"))
    assert routing("rollback", "--to", "1", "--home", str(learner)).returncode == 0
    host = tmp_path / "host"
    initialise(host, hub=str(tmp_path / "hub"))
    assert routing("sync", "--home", str(host)).returncode == 0
    done = routing("rollback", "--to", "1", "--home", str(host))
    assert done.returncode == 2 and "run `routing rollback` on the learner" in done.stderr
