"""The model registry: which models exist, what they cost, what we believe before evidence.

Loaded from a TOML file (format in the README). Every field is checked; a bad file raises
:class:`RegistryError` naming the file, the model and the field.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from routing_runtime.types import TaskType

DEFAULT_REGISTRY_NAME = "default_registry.toml"


class RegistryError(ValueError):
    """A registry file is unreadable or has a bad value; the message names file, model and field."""


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """One model as the registry describes it."""

    id: str
    provider: str
    specialized_for: tuple[TaskType, ...]
    input_cost_per_1k: float
    output_cost_per_1k: float
    prior_quality: float
    typical_latency_ms: float
    enabled: bool = True
    off_specialty_prior_quality: float | None = None

    @property
    def is_generalist(self) -> bool:
        return not self.specialized_for

    def is_specialized(self, task: TaskType) -> bool:
        return task in self.specialized_for

    def call_cost_usd(self, input_tokens: int, output_tokens: int) -> float:
        """List-price cost in USD of one call of ``input_tokens`` in and ``output_tokens`` out.

        >>> m = ModelConfig("m", "p", (), input_cost_per_1k=0.0025, output_cost_per_1k=0.01, prior_quality=0.8,
        ...                 typical_latency_ms=900.0)
        >>> round(m.call_cost_usd(1200, 400), 6)
        0.007
        """
        return (input_tokens * self.input_cost_per_1k + output_tokens * self.output_cost_per_1k) / 1000.0

    def prior_quality_for(self, task: TaskType) -> float:
        """Prior mean quality on ``task``: ``prior_quality`` on its specialties (all tasks for a
        generalist), else ``off_specialty_prior_quality`` (default: 0.15 lower)."""
        if self.is_generalist or task in self.specialized_for:
            return self.prior_quality
        if self.off_specialty_prior_quality is not None:
            return self.off_specialty_prior_quality
        return max(0.0, self.prior_quality - 0.15)


@dataclass(frozen=True, slots=True)
class TaskPolicy:
    """Thresholds and request shape for one task type."""

    min_quality_score: float
    max_cost_per_1k: float | None
    typical_input_tokens: int
    typical_output_tokens: int

    def cost_per_request(self, model: ModelConfig) -> float:
        """List-price cost in USD of a typical request of this task on ``model``."""
        return (
            self.typical_input_tokens * model.input_cost_per_1k
            + self.typical_output_tokens * model.output_cost_per_1k
        ) / 1000.0

    @property
    def typical_tokens(self) -> int:
        return self.typical_input_tokens + self.typical_output_tokens


def _setting(default: float, low: float, high: float = math.inf):
    """A learning setting's default and its valid range (inclusive); ints stay whole numbers."""
    return field(default=default, metadata={"low": low, "high": high})


@dataclass(frozen=True, slots=True)
class LearningSettings:
    """Every knob of the nightly learning run, in one place. The registry's ``[learning]`` table
    may set any field (``routing init`` stores them in the home); each is checked on creation,
    and a bad value raises :class:`RegistryError` (a ``ValueError``) naming the field, the value
    and the valid range.

    Forgetting and priors:

    * ``half_life_days`` (30): a day's evidence weighs 2^(-age / half-life) for a (model, task
      type) whose last ``drift_window_days`` (7) differ from the evidence before them (|z| >
      ``drift_z_threshold``, 3, on quality, log latency or log cost);
    * ``steady_half_life_days`` (180): the half-life of the others, whose evidence shows no drift
      (see ``routing_pipelines.learning.changes.drifting``): a stationary world is learned from
      longer, a slip still forgets at ``half_life_days``.
    * ``prior_pseudo_count`` (10): the most observations the registry's prior quality is worth
      (fewer where the task type's outcomes show the registry off).
    * ``cross_task_prior_count`` (30): the most observations a model's record on its other task
      types is worth in its prior on one more (empirical Bayes on how consistently models stand
      above or below their peers; 0: off). See ``routing_pipelines.learning.posteriors.cross_task_priors``.
    * ``credible_level`` (0.90): the central probability of every posterior interval.

    Publishing:

    * ``exploration_floor`` (0.05): traffic spread over the models still in contention; whole
      while a task type has at most ``exploration_floor_evidence`` (500; 0: never shrinks)
      effective observations, shrinking as √(``exploration_floor_evidence`` / n) beyond (see
      ``routing_pipelines.learning.candidates.exploration_floors``).
    * ``min_best_probability`` (0.01) and ``always_explored`` (0): a model outside a cell's
      ``always_explored`` most promising (by the posterior mean of the cell's objective) whose
      posterior probability of being the best eligible one is below ``min_best_probability``
      leaves the cell's contention: no Thompson share, no floor, no hold by the publication gate;
      the others' shares are scaled up to make up for it. With 19 models (the real-data replay)
      most of the floor and of Thompson sampling's own tail went to such long shots.
      ``min_best_probability = 0`` turns the cut off; ``always_explored = 8`` spares a cell's
      eight most promising models (the setting before ``cross_task_prior_count``, when the
      runners-up needed the floor's evidence to take over from a collapsed top model). See
      ``routing_pipelines.learning.candidates.without_long_shots``.
    * ``thompson_draws`` (4000): posterior draws per task type for P(best) and the specialist comparison.
    * ``plausibly_eligible`` (0.05): a model eligible in fewer draws than this share gets no traffic.
    * ``evaluation_window_days`` (7): days of logged decisions the off-policy evaluation reads.

    The publication gate (see ``routing_pipelines.learning.gate``):

    * ``gate_level`` (0.95): the central coverage of every off-policy interval.
    * ``gate_margin`` (0.05): a cell blocks publication when the candidate is worse than the
      logged policy by more than this share of the logged value, with ``gate_level`` confidence,
    * ``gate_min_effective_samples`` (50): and its estimate is worth at least this many rows,
    * ``gate_max_unsupported_share`` (0.05): and at most this share of the candidate lies on
      models the logged policy never chose in the cell.
    * ``gate_max_untied_share`` (0.5): a model whose posterior rests more than this share on
      outcomes not tied to a decision (prior included) may not gain traffic over the rules in force.

    Change points (see ``routing_pipelines.learning.changes``): a day starts a new segment when it
    differs by more than ``change_z_threshold`` (5) standard errors and, practically, quality by
    more than ``change_min_quality_shift`` (0.10) or latency or cost by more than a factor
    ``change_min_ratio_shift`` (1.5), both sides with at least ``change_min_day_count`` (20)
    observations; evidence before it then weighs ``change_discount`` (0.02).

    Runs: ``max_run_days`` (120) days at most per run; a day whose outcome rows are quarantined
    beyond ``max_quarantined_share`` (0.5) is held out of learning.

    >>> LearningSettings().half_life_days, LearningSettings(max_run_days=30).max_run_days
    (30.0, 30)
    >>> LearningSettings(exploration_floor=0.9)
    Traceback (most recent call last):
    ...
    routing_runtime.registry.RegistryError: LearningSettings: field 'exploration_floor' = 0.9 must be within [0.0, 0.5]
    """

    half_life_days: float = _setting(30.0, 1e-6)
    steady_half_life_days: float = _setting(180.0, 1e-6)
    drift_window_days: int = _setting(7, 1, 3650)
    drift_z_threshold: float = _setting(3.0, 0.0)
    prior_pseudo_count: float = _setting(10.0, 1e-6)
    cross_task_prior_count: float = _setting(30.0, 0.0)
    exploration_floor: float = _setting(0.05, 0.0, 0.5)
    exploration_floor_evidence: float = _setting(500.0, 0.0)
    min_best_probability: float = _setting(0.01, 0.0, 0.5)
    always_explored: int = _setting(0, 0, 1_000_000)
    credible_level: float = _setting(0.90, 0.5, 0.999)
    thompson_draws: int = _setting(4000, 10, 1_000_000)
    plausibly_eligible: float = _setting(0.05, 0.0, 1.0)
    evaluation_window_days: int = _setting(7, 1, 3650)
    change_z_threshold: float = _setting(5.0, 0.0)
    change_min_quality_shift: float = _setting(0.10, 0.0, 1.0)
    change_min_ratio_shift: float = _setting(1.5, 1.0)
    change_min_day_count: int = _setting(20, 1)
    change_discount: float = _setting(0.02, 0.0, 1.0)
    max_run_days: int = _setting(120, 1, 36500)
    max_quarantined_share: float = _setting(0.5, 0.0, 1.0)
    gate_level: float = _setting(0.95, 0.5, 0.999)
    gate_margin: float = _setting(0.05, 0.0, 1.0)
    gate_min_effective_samples: float = _setting(50.0, 1.0)
    gate_max_untied_share: float = _setting(0.5, 0.0, 1.0)
    gate_max_unsupported_share: float = _setting(0.05, 0.0, 1.0)

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            # Frozen: normalise through object.__setattr__ (a whole 14 becomes 14.0 for a float field).
            object.__setattr__(self, f.name, _check_setting(f, getattr(self, f.name), "LearningSettings"))

    @classmethod
    def from_table(cls, table: object, where: str) -> LearningSettings:
        """Settings from a registry's ``[learning]`` table: unset fields keep their defaults;
        errors (:class:`RegistryError`) name ``where`` and the field.

        >>> LearningSettings.from_table({"half_life_days": 14}, "registry.toml: [learning]").half_life_days
        14.0
        >>> LearningSettings.from_table({"max_run_days": 1.5}, "registry.toml: [learning]")
        Traceback (most recent call last):
        ...
        routing_runtime.registry.RegistryError: registry.toml: [learning]: field 'max_run_days' = 1.5 must be a whole number
        """
        fields = {f.name: f for f in dataclasses.fields(cls)}
        table = _check_keys(table, set(fields), where)
        checked = {name: _check_setting(fields[name], value, where) for name, value in table.items()}
        return cls(**checked)  # type: ignore[arg-type]  # each value was checked against its field's type

    def toml_lines(self) -> list[str]:
        """The ``[learning]`` table that loads back to these settings."""
        return ["[learning]", *(f"{f.name} = {getattr(self, f.name)!r}" for f in dataclasses.fields(self))]


def _check_setting(f: dataclasses.Field, value: object, where: str) -> float | int:
    """``value`` as field ``f`` of :class:`LearningSettings` holds it, or RegistryError naming it."""
    whole = isinstance(f.default, int)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"field {f.name!r} = {value!r} must be a number")
    if whole and value != int(value):
        raise _fail(where, f"field {f.name!r} = {value!r} must be a whole number")
    low, high = f.metadata["low"], f.metadata["high"]
    if not low <= value <= high:
        raise _fail(where, f"field {f.name!r} = {value!r} must be within [{low}, {high}]")
    return int(value) if whole else float(value)


@dataclass(frozen=True)
class ModelRegistry:
    """Models grouped as the story has them: specialists per task type, and generalists.

    >>> registry = ModelRegistry.load_default()
    >>> [m.id for m in registry.specialized[TaskType.MATH]]
    ['qwen2.5-math-72b-instruct']
    """

    specialized: dict[TaskType, list[ModelConfig]]
    generalist: list[ModelConfig]
    task_policies: dict[TaskType, TaskPolicy] = field(default_factory=dict)
    learning: LearningSettings = field(default_factory=LearningSettings)
    source: str = "<memory>"

    @property
    def models(self) -> list[ModelConfig]:
        """Every model once, specialists first, in file order."""
        seen: dict[str, ModelConfig] = {}
        for models in self.specialized.values():
            for model in models:
                seen.setdefault(model.id, model)
        for model in self.generalist:
            seen.setdefault(model.id, model)
        return list(seen.values())

    def get(self, model_id: str) -> ModelConfig:
        for model in self.models:
            if model.id == model_id:
                return model
        raise LookupError(f"model_id={model_id!r} is not in the registry ({self.source})")

    def policy(self, task: TaskType) -> TaskPolicy:
        return self.task_policies[task]

    def to_toml(self) -> str:
        """The registry as TOML text that :meth:`from_toml` reads back to an equal registry."""
        def value(v: object) -> str:
            if isinstance(v, bool):
                return "true" if v else "false"
            if isinstance(v, str):
                return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if isinstance(v, (tuple, list)):
                return "[" + ", ".join(value(x.value if isinstance(x, TaskType) else x) for x in v) + "]"
            return repr(v)

        def policy_lines(policy: TaskPolicy) -> list[str]:
            lines = [f"min_quality_score = {value(policy.min_quality_score)}"]
            if policy.max_cost_per_1k is not None:
                lines.append(f"max_cost_per_1k = {value(policy.max_cost_per_1k)}")
            lines += [f"typical_input_tokens = {policy.typical_input_tokens}", f"typical_output_tokens = {policy.typical_output_tokens}"]
            return lines

        out = []
        for task, policy in self.task_policies.items():
            out += [f"[tasks.{task.value}]", *policy_lines(policy), ""]
        out += [*self.learning.toml_lines(), ""]
        for m in self.models:
            out.append("[[models]]")
            for name in ModelConfig.__slots__:
                v = getattr(m, name)
                if v is not None:
                    out.append(f"{name} = {value(v)}")
            out.append("")
        return "\n".join(out)

    @classmethod
    def from_models(cls, models: list[ModelConfig], task_policies: dict[TaskType, TaskPolicy],
                    learning: LearningSettings | None = None, source: str = "<memory>") -> ModelRegistry:
        """Group a flat list of models into specialists per task type and generalists."""
        return _group(models, task_policies, learning or LearningSettings(), source)

    def replace_model(self, model: ModelConfig) -> ModelRegistry:
        """A copy with ``model`` added, or replacing the model of the same id in place."""
        models = [model if m.id == model.id else m for m in self.models]
        if model.id not in {m.id for m in self.models}:
            models.append(model)
        return _group(models, self.task_policies, self.learning, self.source)

    @classmethod
    def load(cls, path: str | Path) -> ModelRegistry:
        """Load and validate a registry TOML file."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise RegistryError(f"{path}: cannot read registry file: {exc.strerror or exc}") from None
        except UnicodeDecodeError as exc:
            raise RegistryError(f"{path}: not UTF-8 text (byte {exc.start}): save the registry as UTF-8") from None
        return cls.from_toml(text, source=str(path))

    @classmethod
    def load_default(cls) -> ModelRegistry:
        """The registry shipped with the package."""
        text = (Path(__file__).parent / DEFAULT_REGISTRY_NAME).read_text(encoding="utf-8")
        return cls.from_toml(text, source=f"<shipped {DEFAULT_REGISTRY_NAME}>")

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> ModelRegistry:
        import tomllib

        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise RegistryError(f"{source}: not valid TOML: {exc}") from None
        return _parse(data, source)


# ----------------------------------------------------------------------------- parsing

_MODEL_FIELDS = {
    "id", "provider", "specialized_for", "input_cost_per_1k", "output_cost_per_1k",
    "prior_quality", "typical_latency_ms", "enabled", "off_specialty_prior_quality",
}
_POLICY_FIELDS = {"min_quality_score", "max_cost_per_1k", "typical_input_tokens", "typical_output_tokens"}
_TOP_LEVEL = {"defaults", "tasks", "learning", "models"}


def _fail(where: str, message: str) -> RegistryError:
    return RegistryError(f"{where}: {message}")


def _check_keys(table: object, allowed: set[str], where: str) -> dict:
    if not isinstance(table, dict):
        raise _fail(where, f"must be a table, got {table!r}")
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise _fail(where, f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    return table


def _number(table: dict, key: str, where: str, *, low: float = 0.0, high: float = math.inf,
            default: float | None = None) -> float:
    """``table[key]`` checked to be a number in ``[low, high]``; ``default`` if absent, which
    without a default is an error naming the field."""
    if key not in table:
        if default is None:
            raise _fail(where, f"missing required field {key!r}")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(where, f"field {key!r} = {value!r} must be a number")
    if not low <= value <= high:
        raise _fail(where, f"field {key!r} = {value!r} must be within [{low}, {high}]")
    return float(value)


def _optional_number(table: dict, key: str, where: str, *, high: float = math.inf, default: float | None = None) -> float | None:
    """A field that may be absent: ``default`` (None unless given) then, else as :func:`_number`."""
    return _number(table, key, where, high=high) if key in table else default


def _parse_policy(table: dict, where: str, base: TaskPolicy) -> TaskPolicy:
    table = _check_keys(table, _POLICY_FIELDS, where)
    max_cost = _optional_number(table, "max_cost_per_1k", where, default=base.max_cost_per_1k)
    policy = TaskPolicy(
        min_quality_score=_number(table, "min_quality_score", where, high=1.0, default=base.min_quality_score),
        max_cost_per_1k=max_cost,
        typical_input_tokens=int(_number(table, "typical_input_tokens", where, high=1e8, default=base.typical_input_tokens)),
        typical_output_tokens=int(_number(table, "typical_output_tokens", where, high=1e8, default=base.typical_output_tokens)),
    )
    if policy.typical_tokens < 1:
        # Cost per 1k tokens divides by it: a typical request must have at least one token.
        raise _fail(where, "typical_input_tokens + typical_output_tokens must be at least 1 (whole tokens)")
    return policy


def _parse_model(table: object, where: str) -> ModelConfig:
    if not isinstance(table, dict):
        raise _fail(where, f"must be a table, got {table!r}")
    model_id = table.get("id")
    if not isinstance(model_id, str) or not model_id.strip():
        raise _fail(where, f"field 'id' = {model_id!r} must be a non-empty string")
    where = f"{where} (id={model_id!r})"
    table = _check_keys(table, _MODEL_FIELDS, where)
    provider = table.get("provider", "")
    if not isinstance(provider, str):
        raise _fail(where, f"field 'provider' = {provider!r} must be a string")
    specialized = table.get("specialized_for", [])
    if not isinstance(specialized, list):
        raise _fail(where, f"field 'specialized_for' = {specialized!r} must be a list of task types")
    tasks = []
    for value in specialized:
        try:
            tasks.append(TaskType(value))
        except ValueError:
            allowed = ", ".join(t.value for t in TaskType)
            raise _fail(where, f"field 'specialized_for' has {value!r}, not one of: {allowed}") from None
    enabled = table.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(where, f"field 'enabled' = {enabled!r} must be true or false")
    return ModelConfig(
        id=model_id,
        provider=provider,
        specialized_for=tuple(dict.fromkeys(tasks)),
        input_cost_per_1k=_number(table, "input_cost_per_1k", where),
        output_cost_per_1k=_number(table, "output_cost_per_1k", where),
        prior_quality=_number(table, "prior_quality", where, high=1.0),
        typical_latency_ms=_number(table, "typical_latency_ms", where, low=1e-9),
        enabled=enabled,
        off_specialty_prior_quality=_optional_number(table, "off_specialty_prior_quality", where, high=1.0),
    )


def model_from_table(table: dict, where: str = "<model>") -> ModelConfig:
    """One ``[[models]]`` entry, validated like a registry file's (errors name ``where``)."""
    return _parse_model(table, where)


def _parse(data: dict, source: str) -> ModelRegistry:
    _check_keys(data, _TOP_LEVEL, source)
    base = _parse_policy(
        data.get("defaults", {}), f"{source}: [defaults]",
        TaskPolicy(min_quality_score=0.7, max_cost_per_1k=None, typical_input_tokens=1000, typical_output_tokens=500),
    )
    tasks = data.get("tasks", {})
    if not isinstance(tasks, dict):
        raise _fail(source, "[tasks] must be a table of task types")
    policies = {}
    for name in tasks:
        try:
            TaskType(name)
        except ValueError:
            allowed = ", ".join(t.value for t in TaskType)
            raise _fail(source, f"[tasks.{name}] is not a task type; use one of: {allowed}") from None
    for task in TaskType:
        policies[task] = _parse_policy(tasks.get(task.value, {}), f"{source}: [tasks.{task.value}]", base)

    learning = LearningSettings.from_table(data.get("learning", {}), f"{source}: [learning]")

    raw_models = data.get("models", [])
    if not isinstance(raw_models, list) or not raw_models:
        raise _fail(source, "needs at least one [[models]] entry")
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for i, table in enumerate(raw_models):
        model = _parse_model(table, f"{source}: models[{i}]")
        if model.id in seen:
            raise _fail(f"{source}: models[{i}] (id={model.id!r})", "duplicate model id")
        seen.add(model.id)
        models.append(model)
    if not any(m.enabled for m in models):
        raise _fail(source, "every model has enabled = false: enable at least one, or nothing can be routed")

    return _group(models, policies, learning, source)


def _group(models: list[ModelConfig], policies: dict[TaskType, TaskPolicy], learning: LearningSettings, source: str) -> ModelRegistry:
    specialized: dict[TaskType, list[ModelConfig]] = {}
    for model in models:
        for task in model.specialized_for:
            specialized.setdefault(task, []).append(model)
    return ModelRegistry(
        specialized=specialized, generalist=[m for m in models if m.is_generalist],
        task_policies=policies, learning=learning, source=source,
    )
