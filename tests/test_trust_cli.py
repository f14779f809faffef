"""Trust (wave 2) at the command line: guarded init and demo, and a rules table that reads right."""

from __future__ import annotations

import json
import sqlite3

import pytest

from conftest import count_rows, db_connect
from routing_runtime.cli import main
from routing_runtime.registry import ModelRegistry

SHIPPED_TOML = ModelRegistry.load_default().to_toml()


def disabled(toml: str, model_id: str) -> str:
    marker = f'id = "{model_id}"'
    head, tail = toml.split(marker, 1)
    assert "enabled = true" in tail
    return head + marker + tail.replace("enabled = true", "enabled = false", 1)


def enabled_models(home) -> dict[str, int]:
    conn = db_connect(home)
    try:
        return dict(conn.execute("SELECT id, enabled FROM models"))
    finally:
        conn.close()


def test_init_without_registry_keeps_the_registry_last_applied(tmp_path, write_registry, capsys):
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    path = write_registry(disabled(SHIPPED_TOML, "gpt-4o"))
    assert main(["init", "--home", str(home), "--registry", str(path)]) == 0
    capsys.readouterr()
    assert main(["init", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "registry kept" in out and "unchanged" in out
    assert enabled_models(home)["gpt-4o"] == 0, "the disabled model came back"
    assert main(["rules", "--home", str(home), "--json"]) == 0
    rules = json.loads(capsys.readouterr().out)
    assert all(m["selection_probability"] == 0 for r in rules["rules"] for m in r["models"] if m["model_id"] == "gpt-4o")


def test_init_of_a_new_home_applies_the_shipped_registry(tmp_path, capsys):
    assert main(["init", "--home", str(tmp_path / "new")]) == 0
    assert "registry <shipped default_registry.toml> applied" in capsys.readouterr().out


@pytest.mark.parametrize("problem, text, message", [
    ("every_model_disabled", SHIPPED_TOML.replace("enabled = true", "enabled = false"), "every model has enabled = false"),
    ("zero_typical_tokens", SHIPPED_TOML.replace("typical_input_tokens = 400", "typical_input_tokens = 0").replace(
        "typical_output_tokens = 600", "typical_output_tokens = 0"),
     "[tasks.math]: typical_input_tokens + typical_output_tokens must be at least 1"),
])
def test_init_refuses_a_bad_registry_before_writing_anything(tmp_path, write_registry, capsys, problem, text, message):
    path = write_registry(text)
    new_home = tmp_path / "new"
    assert main(["init", "--home", str(new_home), "--registry", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not new_home.exists()
    # An existing home keeps its registry and rules untouched.
    home = tmp_path / "home"
    assert main(["init", "--home", str(home)]) == 0
    before = enabled_models(home), count_rows(home, "rule_sets")
    assert main(["init", "--home", str(home), "--registry", str(path)]) == 2
    assert (enabled_models(home), count_rows(home, "rule_sets")) == before


def test_zero_token_fixture_really_has_zero_typical_tokens():
    # Guards the parametrisation above: the shipped math policy has these numbers.
    assert "typical_input_tokens = 400" in SHIPPED_TOML and "typical_output_tokens = 600" in SHIPPED_TOML


def test_init_repairs_a_home_whose_newest_rule_set_is_unusable(home, capsys):
    conn = sqlite3.connect(home / "routing.db", isolation_level=None)
    conn.execute("UPDATE model_routing_rules SET selection_probability = 'NaN' WHERE rule_set_version = 1")
    conn.close()
    assert main(["init", "--home", str(home)]) == 0
    assert "rule set v2 published" in capsys.readouterr().out
    assert main(["rules", "--home", str(home), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["rule_set_version"] == 2 and document["note"] == ""


def test_routing_rules_shows_the_rule_set_served_and_why(home, capsys):
    conn = sqlite3.connect(home / "routing.db", isolation_level=None)
    conn.execute("UPDATE rule_sets SET inputs = 'not json' WHERE version = 1")
    conn.close()
    assert main(["rules", "--home", str(home), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["rule_set_version"] is None and document["source"] == "registry-order"
    assert document["note"].startswith("no usable rule set (v1: inputs='not json' is not a JSON object)")
    assert main(["rules", "--home", str(home), "--task", "math"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("registry order (registry-order") and "served instead of the newest: no usable rule set" in out


def test_routing_rules_table_says_rank_is_fallback_order_and_p_select_is_traffic_share(home, capsys):
    assert main(["rules", "--home", str(home), "--task", "math", "--preference", "balanced"]) == 0
    out = capsys.readouterr().out
    assert "rank: the order by the preference's objective" in out and "a fallback takes the next rank" in out
    assert "p(select): the share of requests sent to the model" in out
    header = next(line for line in out.splitlines() if line.strip().startswith("rank "))
    assert header.split()[:3] == ["rank", "model", "p(select)"]


def test_select_typo_in_task_is_refused_at_the_command_line(home, capsys):
    assert main(["select", "debuging", "--home", str(home)]) == 2
    assert "did you mean 'debugging'" in capsys.readouterr().err
    assert count_rows(home, "routing_decisions") == 0


# ----------------------------------------------------------------------------- demo


def test_demo_refuses_a_router_home_it_did_not_create(home, capsys):
    pytest.importorskip("dagster")
    decisions = count_rows(home, "rule_sets")
    assert main(["demo", "--days", "2", "--home", str(home)]) == 2
    err = capsys.readouterr().err
    assert f"--home={home} was not created by routing demo" in err and "refusing to delete it" in err
    assert (home / "routing.db").exists() and count_rows(home, "rule_sets") == decisions


def test_demo_replaces_only_a_home_it_created(tmp_path, capsys):
    pytest.importorskip("dagster")
    pytest.importorskip("matplotlib")
    home = tmp_path / "demo"
    home.mkdir()  # an empty folder is fine
    args = ["demo", "--days", "2", "--requests-per-day", "40", "--seed", "1", "--home", str(home)]
    assert main(args) == 0
    assert (home / ".routing-demo").is_file()
    (home / "left-over.txt").write_text("from the first run")
    assert main(args) == 0, capsys.readouterr().err
    assert not (home / "left-over.txt").exists() and (home / ".routing-demo").is_file()


def test_readme_install_lines_work_from_a_clone_and_the_license_is_an_spdx_string():
    """Regression: the README said `pip install 'routing-runtime[pipeline]'` (not on PyPI), and the
    `project.license` table is deprecated by setuptools (deadline 2027-02-18)."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    readme = (root / "README.md").read_text()
    assert "pip install 'routing-runtime[pipeline]'`" not in readme
    assert "pip install '.[pipeline]'" in readme and "routing-runtime[pipeline] @ git+" in readme
