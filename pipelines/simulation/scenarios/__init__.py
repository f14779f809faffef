"""Shipped simulation scenarios (TOML) and their loader.

Every scenario's ground truth is synthetic and says so. Format::

    name = "drift"
    description = "..."
    days = 14
    requests_per_day = 1600
    start = "2026-01-05"
    registry = "path/to/registry.toml"          # optional; default: the shipped registry
    [task_mix]                                  # optional weights (default: equal)
    code_generation = 2
    [preference_mix]                            # optional weights (default: equal)
    balanced = 3
    [models."model-id"]                         # the truth of every registry model
    latency_ms = 800                            # median latency
    latency_spread = 0.35                       # log-scale sd of latency (default 0.35)
    cost_factor = 1.0                           # true cost / list price (default 1)
    tokens_factor = 1.0                         # tokens vs the task's typical request (default 1)
    partial_share = 0.2                         # share of partial outcomes (default 0.2)
    quality = { default = 0.6, math = 0.9 }     # true mean quality per task type
    [[events]]                                  # happen before the traffic of `day`
    day = 7
    kind = "quality_drop"                       # quality_drop | add_model | price_change | disable_model
    model = "model-id"
    task_types = ["code_generation"]            # quality_drop only (default: all)
    value = 0.45                                # quality_drop: new quality; price_change: price factor
    registry = { ... }                          # add_model: its registry entry (as in [[models]])
    truth = { latency_ms = 1800, quality = { default = 0.5 } }   # add_model: its truth
"""

from __future__ import annotations

import datetime as dt
import math
import tomllib
from pathlib import Path

from routing_pipelines.simulation.simulator import EVENT_KINDS, Event, ModelTruth, Scenario
from routing_runtime.registry import ModelRegistry, model_from_table
from routing_runtime.types import RoutingPreference, TaskType, parse_enum

SCENARIO_DIR = Path(__file__).parent
SHIPPED = tuple(sorted(p.stem for p in SCENARIO_DIR.glob("*.toml")))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A shipped scenario by name (``stationary``, ``drift``, ``new-model``, ``price-change``) or a TOML file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ValueError(f"scenario={str(name_or_path)!r} is not shipped; use one of {', '.join(SHIPPED)} or a .toml file")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"scenario file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"scenario file {path}: not valid TOML: {exc}") from None
    return _parse(data, str(path))


def _truth(table: dict, where: str) -> ModelTruth:
    quality = dict(table.get("quality", {}))
    default = quality.pop("default", None)
    values = {}
    for task in TaskType:
        value = quality.pop(task.value, default)
        if not isinstance(value, (int, float)) or not 0 <= value <= 1:
            raise ValueError(f"{where}: quality of {task.value} = {value!r} must be within [0, 1] (or give a default)")
        values[task] = float(value)
    if quality:
        raise ValueError(f"{where}: quality has unknown task types {sorted(quality)}")
    numbers = {}
    for key, default, low, high in (("latency_ms", None, 1e-9, math.inf), ("cost_factor", 1.0, 1e-9, math.inf),
                                    ("partial_share", 0.2, 0.0, 1.0), ("latency_spread", 0.35, 0.0, 5.0),
                                    ("tokens_factor", 1.0, 1e-9, math.inf)):
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"{where}: {key} = {value!r} must be a number within [{low}, {high}]")
        numbers[key] = float(value)
    return ModelTruth(values, **numbers)


def _parse(data: dict, source: str) -> Scenario:
    registry_path = data.get("registry")
    registry = ModelRegistry.load(Path(source).parent / registry_path) if registry_path else ModelRegistry.load_default()
    truth = {model_id: _truth(table, f"{source}: [models.{model_id!r}]") for model_id, table in data.get("models", {}).items()}
    events = []
    for i, table in enumerate(data.get("events", [])):
        where = f"{source}: events[{i}]"
        kind = table.get("kind")
        if kind not in EVENT_KINDS:
            raise ValueError(f"{where}: kind = {kind!r} is not one of {', '.join(EVENT_KINDS)}")
        model = None
        event_truth = None
        if kind == "add_model":
            model = model_from_table({"id": table.get("model"), **table.get("registry", {})}, where)
            event_truth = _truth(table.get("truth", {}), where)
        elif table.get("model") not in {m.id for m in registry.models}:
            raise ValueError(f"{where}: model = {table.get('model')!r} is not a registry model")
        events.append(Event(
            day=int(table["day"]), kind=kind, model_id=table["model"],
            task_types=tuple(parse_enum(TaskType, t, f"{where}: task_types") for t in table.get("task_types", [])),
            value=table.get("value"), model=model, truth=event_truth,
        ))
    missing = [m.id for m in registry.models if m.id not in truth]
    if missing:
        raise ValueError(f"{source}: no [models] truth for registry models {missing}")
    weights = lambda enum, key: {parse_enum(enum, k, f"{source}: [{key}]"): float(v) for k, v in data[key].items()} if key in data else None  # noqa: E731
    scenario = Scenario(
        name=data.get("name", Path(source).stem), description=data.get("description", ""), registry=registry, truth=truth,
        days=int(data.get("days", 14)), requests_per_day=int(data.get("requests_per_day", 1600)),
        start=dt.date.fromisoformat(data.get("start", "2026-01-05")), events=events,
    )
    if (mix := weights(TaskType, "task_mix")) is not None:
        scenario.task_mix = mix
    if (mix := weights(RoutingPreference, "preference_mix")) is not None:
        scenario.preference_mix = mix
    return scenario
