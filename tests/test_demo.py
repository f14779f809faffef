"""`routing demo` end to end in a temp home, the report, and scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("dagster")
pytest.importorskip("matplotlib")

from routing_pipelines.simulation.scenarios import SHIPPED, load_scenario
from routing_runtime.cli import main


def test_demo_writes_the_report_and_plots(tmp_path: Path, capsys):
    home = tmp_path / "demo"
    assert main(["demo", "--scenario", "drift", "--days", "3", "--requests-per-day", "240", "--seed", "1", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "converged:" in out and "mean quality: router" in out
    report = (home / "report.md").read_text()
    for heading in ("# Routing demo: `drift`", "## Convergence on the last day", "## Realised quality and cost",
                    "## Events and reactions", "static rules from the registry", "oracle that knows the truth", "**synthetic**"):
        assert heading in report
    for image in ("traffic_share.png", "regret.png"):
        data = (home / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        assert f"]({image})" in report
    # Three simulated nights, three learned rule sets on top of the registry's.
    assert main(["rules", "--home", str(home), "--json"]) == 0
    assert '"rule_set_version": 4' in capsys.readouterr().out


def test_demo_refuses_to_replace_a_folder_that_is_not_a_router_home(tmp_path: Path, capsys):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("do not delete")
    assert main(["demo", "--days", "2", "--home", str(precious)]) == 2
    assert "refusing to delete" in capsys.readouterr().err
    assert (precious / "thesis.tex").exists()


def test_every_shipped_scenario_loads_with_truth_for_every_model():
    assert set(SHIPPED) == {"stationary", "drift", "new-model", "price-change"}
    for name in SHIPPED:
        scenario = load_scenario(name)
        assert set(scenario.truth) == {m.id for m in scenario.registry.models}
        assert scenario.days >= 10


@pytest.mark.parametrize("body, expected", [
    ('[models."gpt-4o"]\nlatency_ms = 100\nquality = { default = 1.5 }', "must be within [0, 1]"),
    ('[models."gpt-4o"]\nlatency_ms = -1\nquality = { default = 0.5 }', "latency_ms = -1"),
    ('[models."gpt-4o"]\nlatency_ms = 100\npartial_share = 2\nquality = { default = 0.5 }', "partial_share = 2"),
    ('[[events]]\nday = 2\nkind = "explode"\nmodel = "gpt-4o"', "kind = 'explode'"),
])
def test_bad_scenario_files_name_the_problem(tmp_path: Path, body: str, expected: str):
    path = tmp_path / "bad.toml"
    path.write_text(body)
    with pytest.raises(ValueError, match=None) as error:
        load_scenario(path)
    assert expected in str(error.value) and str(path) in str(error.value)


def test_unknown_scenario_name_lists_the_shipped_ones():
    with pytest.raises(ValueError, match="stationary"):
        load_scenario("no-such-scenario")
