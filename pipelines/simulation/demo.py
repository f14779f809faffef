"""`routing demo`: a fresh home, simulated agent traffic, one learning run per night, a report."""

from __future__ import annotations

import base64
import dataclasses
import shutil
import sys
import time
from pathlib import Path

from routing_pipelines.simulation import plots, report
from routing_pipelines.simulation.scenarios import load_scenario
from routing_pipelines.simulation.simulator import DayResult, SimulationResult, simulate

DEFAULT_HOME = ".routing-demo"
#: Written into every home the demo creates: the demo replaces only homes that carry it.
DEMO_MARKER = ".routing-demo"


def _replace_demo_home(home: Path) -> None:
    """Empty ``home`` for a new demo run, or refuse: a folder is deleted only if a demo made it
    (it holds :data:`DEMO_MARKER`), so a real router home or any other folder is never wiped."""
    if home.is_symlink() or home.exists() and not home.is_dir():
        raise ValueError(f"--home={home} is not a folder: refusing to delete it; pass a new or empty folder")
    if home.is_dir() and any(home.iterdir()):
        if not (home / DEMO_MARKER).is_file():
            raise ValueError(
                f"--home={home} was not created by routing demo (no {DEMO_MARKER} marker in it): refusing to delete it;"
                " pass a new or empty folder"
            )
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    (home / DEMO_MARKER).write_text("created by `routing demo`, which deletes and recreates this folder on each run\n")


def attach_report(home: Path, result: SimulationResult, figures: list[report.DayFigures], images: list[Path]) -> None:
    """Show the report on the rules asset in the Dagster UI, as an observation of it: the headline
    figures inline, the summary and the whole report (its plots embedded, the UI cannot reach the
    home's files) as Markdown."""
    import dagster as dg

    from routing_pipelines.assets import names
    from routing_pipelines.learn import dagster_instance

    embedded = {p.name: "data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii") for p in images}
    with dagster_instance(home) as instance:
        instance.report_runless_asset_event(dg.AssetObservation(
            asset_key=names.MODEL_ROUTING_RULES,
            metadata={
                **report.headline(result, figures),
                "summary": dg.MetadataValue.md(report.render_summary(result, figures)),
                "demo_report": dg.MetadataValue.md(report.render_markdown(result, figures, embedded)),
            },
        ))


def run_demo(scenario_name: str = "stationary", *, days: int | None = None, requests_per_day: int | None = None,
             seed: int = 0, home: str | None = None) -> int:
    scenario = load_scenario(scenario_name)
    if days is not None:
        if days < 2:
            raise ValueError(f"--days={days} is too short: the router needs at least 2 days to learn anything")
        scenario = dataclasses.replace(scenario, days=days)
    if requests_per_day is not None:
        if requests_per_day < 1:
            raise ValueError(f"--requests-per-day={requests_per_day} must be at least 1")
        scenario = dataclasses.replace(scenario, requests_per_day=requests_per_day)
    home_path = Path(home or DEFAULT_HOME).resolve()
    _replace_demo_home(home_path)
    print(f"scenario '{scenario.name}': {scenario.description}", file=sys.stderr)
    print(f"{scenario.days} days x {scenario.requests_per_day} requests, seed {seed}, home {home_path}", file=sys.stderr)
    started = time.perf_counter()

    terminal = sys.stderr.isatty()

    def progress(day: DayResult) -> None:
        done = day.day / scenario.days
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        print(f"{chr(13) if terminal else ''}[{bar}] day {day.day}/{scenario.days}  quality {day.quality:.3f}"
              f" (oracle {day.oracle_quality:.3f})  rule set v{day.rule_set_version}  {time.perf_counter() - started:5.1f}s",
              end="" if terminal else "\n", file=sys.stderr, flush=True)

    result = simulate(scenario, home_path, seed=seed, on_day=progress)
    if terminal:
        print(file=sys.stderr)
    figures = report.day_figures(result)
    images = [
        plots.traffic_share_plot(result, home_path / "traffic_share.png"),
        plots.regret_plot(result, figures, home_path / "regret.png"),
    ]
    (home_path / "report.md").write_text(report.render_markdown(result, figures, {p.name: p.name for p in images}))
    attach_report(home_path, result, figures, images)
    print(report.print_summary(result, figures))
    print(f"\nreport: {home_path / 'report.md'}; plots: {', '.join(str(p) for p in images)}")
    print(f"see the runs in the Dagster UI: routing ui --home {home_path}")
    return 0
