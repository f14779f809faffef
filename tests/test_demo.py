"""`routing demo` end to end in a temp home, the report, and scenario files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

pytest.importorskip("dagster")
pytest.importorskip("matplotlib")

from routing_pipelines.simulation import plots, report
from routing_pipelines.simulation.report import CELLS
from routing_pipelines.simulation.scenarios import SHIPPED, load_scenario
from routing_pipelines.simulation.simulator import SimulationResult, simulate, true_best
from routing_runtime.cli import main
from routing_runtime.types import RoutingPreference, TaskType


def test_demo_writes_the_report_and_plots(tmp_path: Path, capsys):
    home = tmp_path / "demo"
    assert main(["demo", "--scenario", "drift", "--days", "3", "--requests-per-day", "240", "--seed", "1", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "converged:" in out and "mean quality: router" in out
    report = (home / "report.md").read_text()
    for heading in ("# Routing demo: `drift`", "## Convergence on the last day", "## Realised quality and cost",
                    "## Events and reactions", "static rules from the registry", "oracle that knows the truth", "**synthetic**"):
        assert heading in report
    # Tables, not lines of text: convergence as a task type x preference matrix, spend against the oracle.
    assert "| task type | " + " | ".join(p.value for p in RoutingPreference) + " |" in report
    assert sum(line.startswith(tuple(f"| {t.value} | " for t in TaskType)) for line in report.splitlines()) == len(TaskType)
    assert "| cost against the oracle |" in report
    assert "No events in the 3 simulated days." in report  # drift's event is on day 7
    for image in ("traffic_share.png", "regret.png"):
        data = (home / image).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        assert f"]({image})" in report
    # Three simulated nights, three learned rule sets on top of the registry's.
    assert main(["rules", "--home", str(home), "--json"]) == 0
    assert '"rule_set_version": 4' in capsys.readouterr().out


def test_demo_shows_its_report_in_the_dagster_ui_as_markdown_with_its_plots(tmp_path: Path):
    import dagster as dg

    from routing_pipelines.assets import names
    from routing_pipelines.learn import dagster_instance

    home = tmp_path / "demo"
    assert main(["demo", "--days", "2", "--requests-per-day", "120", "--home", str(home)]) == 0
    with dagster_instance(home) as instance:
        [record] = instance.fetch_observations(dg.AssetKey(names.MODEL_ROUTING_RULES), limit=1).records
    metadata = record.asset_observation.metadata
    # Short figures inline; the summary and the report as Markdown, never a fixed-width text table.
    assert metadata["cells_converged"].value.endswith(f" of {len(TaskType) * len(RoutingPreference)}")
    assert "against the oracle" in metadata["spend_usd"].value
    assert isinstance(metadata["summary"], dg.MarkdownMetadataValue)
    assert "| this router (measured) |" in metadata["summary"].value
    assert isinstance(metadata["demo_report"], dg.MarkdownMetadataValue)
    report = metadata["demo_report"].value
    assert report.startswith("# Routing demo: `stationary`")
    # The UI cannot reach the home's files: the plots travel inside the report.
    assert report.count("](data:image/png;base64,iVBORw0KGgo") == 2


@pytest.fixture(scope="module")
def drift_without_learning(tmp_path_factory) -> SimulationResult:
    """Eight days of the drift scenario (its event on day 7) routed by the registry's rules:
    a few seconds, enough to draw every panel and an event."""
    scenario = dataclasses.replace(load_scenario("drift"), days=8, requests_per_day=400)
    return simulate(scenario, tmp_path_factory.mktemp("drift"), seed=3, learn=lambda home, day: None)


def test_traffic_plot_has_a_panel_per_cell_with_the_true_best_marked(drift_without_learning: SimulationResult):
    result = drift_without_learning
    fig = plots.traffic_share_figure(result)
    panels = [ax for ax in fig.axes if ax.has_data()]
    # A grid of task types x preferences: a new task type or preference gets its own panels.
    assert len(panels) == len(TaskType) * len(RoutingPreference)
    for (task, pref), ax in zip(CELLS, panels):
        best = [true_best(result.registry_by_day[i], result.truth_by_day[i], task, pref) for i in range(len(result.days))]
        [line] = [line for line in ax.get_lines() if line.get_label() == plots.TRUE_BEST_LABEL]
        assert list(line.get_ydata()) == pytest.approx([result.share(i, task, pref, b) for i, b in enumerate(best)])
        assert ax.get_title(loc="left") == "true best: " + " → ".join(dict.fromkeys(best))
    # The drift moves the true best of Codestral's cells on day 7: the panel says so.
    assert panels[0].get_title(loc="left") == "true best: codestral-2508 → claude-sonnet-4-5"
    assert {ax.get_ylabel() for ax in fig.axes[::len(RoutingPreference)]} == {t.value for t in TaskType}


def test_report_lists_each_event_and_cell_it_moved_in_a_table(drift_without_learning: SimulationResult):
    result = drift_without_learning
    markdown = report.render_markdown(result, report.day_figures(result), {})
    assert "### Day 7: codestral-2508 quality drops to 0.45 on code_generation, code_review, debugging, testing" in markdown
    assert "| cell | true best before → after | router followed after |" in markdown
    # Routed by the registry's rules alone, the router never follows the drift.
    assert "Router: 8 of 8 affected cells not followed within the run." in markdown
    assert "| code_generation/quality | codestral-2508 → claude-sonnet-4-5 | **not within the run** |" in markdown


def test_regret_plot_has_a_spend_panel_for_the_router_and_the_oracle(drift_without_learning: SimulationResult):
    result = drift_without_learning
    figures = report.day_figures(result)
    router, _static, oracle = report.policy_totals(figures)
    fig = plots.regret_figure(result, figures)
    [spend] = [ax for ax in fig.axes if "USD" in ax.get_ylabel()]
    ends = {line.get_label(): line.get_ydata()[-1] for line in spend.get_lines() if not line.get_label().startswith("_")}
    assert ends["this router (measured)"] == pytest.approx(router.cost_usd)
    assert ends["oracle that knows the truth (expected)"] == pytest.approx(oracle.cost_usd)
    assert f"{router.cost_usd / oracle.cost_usd - 1:+.1%} against the oracle" in spend.get_title()
    for ax in fig.axes:
        assert ax.get_title() and ax.get_xlabel() == "simulated day" and ax.get_ylabel() and ax.get_legend() is not None


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
