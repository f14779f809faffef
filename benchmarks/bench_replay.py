"""Replay benchmark: the router's nightly learning loop on real per-question LLM outcomes.

Run with ``python benchmarks/bench_replay.py [--source all|openllm_v2|routellm|routerbench_mini]
[--days 20] [--per-day 300] [--seed 0] [--repeats 15] [--incomplete drop-questions|drop-models]
[--ablations] [--data DIR] [--quick] [--json out.json]``. ``--quick`` (3 days × 20 requests, one
repeat; seconds) only proves it still runs: ``make test``.

Every source of real per-question outcomes in ``../shared/data`` is a replay (``--source all``, the
default, runs each whose files are there and says SKIP for the others):

* ``routellm``: RouteLLM's answers of Mixtral-8x7B and GPT-4-1106 to GSM8K (1,319 questions → math)
  and MMLU (57 subjects, 14,042 questions → general), correct or not; list prices from the shared
  LiteLLM price table.
* ``routerbench_mini``: 800 prompts each answered by two Qwen3.5 models (35B-A3B and 397B-A17B),
  correct or not; its task types math → math, tool (function calling) → planning, mcq, text and
  vqa → general; prices per token from the logged costs (CNY: only their ratio matters). The two
  models are close (0.72 against 0.73 on mcq), the hard case for an exploration floor.
* ``openllm_v2`` (19 models, the many-arm case), described next.

Data (not ours, not shipped): the Open LLM Leaderboard v2 outcomes in
``../shared/data/outcomes/openllm_v2/`` beside the project (``--data DIR`` for another folder):
``openllm_v2_correctness_long.csv.gz`` (columns ``model``, ``subtask``, ``question_idx``,
``correct``): for 19 open models, whether each one answered each leaderboard question correctly;
and ``price_usd_per_million_tokens.csv`` (``model``, ``usd_per_million_tokens``): one blended
price per model. Subtasks map to task types as the data README suggests: ``leaderboard_math_*``
(MATH-hard) → math; ``leaderboard_mmlu_pro``, ``leaderboard_gpqa_*`` → general;
``leaderboard_bbh_*``, ``leaderboard_musr_*`` → planning. A replay needs full information (the
outcome of *every* model on every served question, whichever model a policy picks), but one model
(SOLAR-10.7B) has no MMLU-Pro answers. ``--incomplete drop-questions`` (default) keeps all 19
models and only the questions every model answered (general is then GPQA only);
``--incomplete drop-models`` keeps every question and drops the models with gaps (18 models).
If the data folder is absent the benchmark prints why and exits 0.

What is replayed, per repeat (seed ``--seed + r``, everything seeded):

* The questions of each task type are shuffled and served as a stream, ``--per-day`` requests per
  task type per day for ``--days`` days; when a task type runs out of questions its stream goes on
  with a fresh shuffle (an epoch), so a question can be served more than once. Every policy sees
  the same stream (common random numbers), so differences between policies are not question luck.
* **Router** (the product's learning code, unmodified): a registry built in memory with the models
  as generalists, their real prices, ``prior_quality = 0.5`` for all (no prior knowledge),
  ``typical_latency_ms = 1000`` (no latency data), ``min_quality_score = 0`` and the default
  ``[learning]`` settings (half-life 30 days, 180 where a cell shows no drift; prior pseudo-count
  at most 10, learned below it; the cross-task prior at most 30; exploration floor 0.05, shrinking
  beyond 500 observations of a task type; the long-shot cut in every cell).
  Day 1 uses the registry rule set (``build_rules(registry_estimates(...))``). Each request draws a
  model from the rule set's ``selection_probability`` for (task type, ``quality``) and observes that
  model's real ``correct`` on that question (success/failure, ``quality_score`` = correct, cost =
  1000 tokens × price, latency 1000 ms). Each night the day's rows go through
  ``routing_pipelines.learning.statistics.daily_stats``; all days so far through ``routing_pipelines.learning.posteriors.posteriors_as_of``
  (change points, forgetting, posteriors) and ``routing_pipelines.learning.candidates.candidate_rules``, which is
  the rule set of the next day, exactly as the nightly Dagster job chains them.
* **Plain batched Thompson sampling** (reference, numpy): Beta(1, 1) per (task type, model), no
  other prior, no forgetting, no exploration floor. Each request draws one sample per model from
  the posteriors frozen at the start of the day and takes the argmax; successes and failures are
  added nightly. Same feedback delay as the router.
* **Epsilon-greedy** (ε = 0.1, batched), as in the scenario benchmark: with probability ε a model
  drawn uniformly, else the best by the posterior means (s + 1) / (n + 2) frozen at the start of
  the day, ties broken at random.
* **Uniform random**: a model drawn uniformly per request.
* **Best fixed model in hindsight**, per task type: the model with the highest mean correctness over
  exactly the questions served for that task type (with repeats, as served). The overall row uses
  the per-task-type best models (a fixed model per task type). For the last-days columns the same
  model is scored on the questions of those days.
* **Oracle** (context only): a question counts as solved when any model solved it.

Reported per task type and overall (all requests pooled; task types have equal traffic): realized
mean quality (= share correct) of each policy, router / best fixed and TS / best fixed over the
whole replay and over the last 5 days (after learning), averaged over repeats (± the standard
deviation across repeats when there are several). The ``floor cost`` line is the expected quality
given up by spreading the floor evenly over all models: floor × (best fixed − mean of all models)
/ best fixed.

With ``--ablations`` a second table re-runs the router on the same streams with one learning choice
changed at a time. First issue 12's last four, each back to what it was before: no cross-task
prior, the floor never shrinking, a 30-day half-life where a cell shows no drift, a cell's eight
most promising models spared from the long-shot cut; then all four at once (the router before).
Then: the registry's pseudo-count as it is (not learned); no long-shot cut; day 1 routed by the
rule set of an empty history instead of the registry rule set (tied priors share it); exploration
floor 0; a fixed 14-day half-life; no forgetting; prior pseudo-count 2 instead of 10; then the last
four at once (and no long-shot cut, no cross-task prior). That last variant has the ingredients of plain TS (what remains
different: the prior mean is shrunk toward the pooled mean of the other models instead of 0.5,
and P(best) is estimated from 4000 draws), so it checks the harness as much as the router: it
should land on plain TS (over 30 seeds it did, within 0.012 on every task type).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl

from routing_pipelines.learning import posteriors as posteriors_module
from routing_pipelines.learning.posteriors import compute_posteriors, posteriors_as_of
from routing_pipelines.learning.candidates import candidate_rules
from routing_pipelines.learning.statistics import STATS_SCHEMA, daily_stats
from routing_runtime.registry import ModelRegistry
from routing_runtime.rules import RuleRow, build_rules, registry_estimates
from routing_runtime.types import RoutingPreference, TaskType

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"
OUTCOMES = Path("outcomes") / "openllm_v2"  # under the data folder
CORRECTNESS_NAME = "openllm_v2_correctness_long.csv.gz"
PRICE_NAME = "price_usd_per_million_tokens.csv"

#: Subtask name prefix → task type (the data README's suggested mapping).
SUBTASK_TASKS: tuple[tuple[str, TaskType], ...] = (
    ("leaderboard_math_", TaskType.MATH),
    ("leaderboard_mmlu_pro", TaskType.GENERAL),
    ("leaderboard_gpqa_", TaskType.GENERAL),
    ("leaderboard_bbh_", TaskType.PLANNING),
    ("leaderboard_musr_", TaskType.PLANNING),
)
TOKENS_PER_REQUEST = 1000
LATENCY_MS = 1000.0
START_DAY = dt.date(2025, 1, 1)
LAST_DAYS = 5
PREFERENCE = RoutingPreference.QUALITY


@dataclass(frozen=True)
class LearningKnobs:
    """The registry's ``[learning]`` table for one router variant, and how its day 1 is routed.

    ``cold_start="registry"`` is the product's: the rule set ``routing init`` builds from registry
    priors, where the top-ranked model takes all but the floor (with tied priors: the first model id).
    ``"posterior"`` publishes the nightly rule set of an empty history instead (P(best) under the
    priors alone, about uniform here), as plain TS does on its first day.
    """

    label: str
    half_life_days: float = 30.0
    steady_half_life_days: float = 180.0
    prior_pseudo_count: float = 10.0
    #: False: the registry's pseudo-count as it is, not learned from how far priors are off.
    learned_prior_weight: bool = True
    cross_task_prior_count: float = 30.0
    exploration_floor: float = 0.05
    exploration_floor_evidence: float = 500.0
    min_best_probability: float = 0.01
    always_explored: int = 0
    cold_start: Literal["registry", "posterior"] = "registry"


NO_FORGETTING = 1e9  # days: weights 2^(-age / 1e9) = 1 for any replay
ROUTER = LearningKnobs("router (as shipped)")
#: The router before issue 12's last change: no cross-task prior, the floor never shrinking, a
#: 30-day half-life everywhere and the long-shot cut only beyond a cell's eight most promising models.
BEFORE = dict(cross_task_prior_count=0.0, exploration_floor_evidence=0.0, steady_half_life_days=30.0, always_explored=8)
#: Router variants with one learning knob changed at a time, then all together; the last one has
#: the same ingredients as plain TS (no floor, no decay, 2 pseudo-observations, no day-1 bias).
ABLATIONS = (
    LearningKnobs("router, no cross-task prior", cross_task_prior_count=0.0),
    LearningKnobs("router, the floor never shrinking", exploration_floor_evidence=0.0),
    LearningKnobs("router, a 30-day half-life where a cell shows no drift", steady_half_life_days=30.0),
    LearningKnobs("router, a cell's eight most promising models spared from the long-shot cut", always_explored=8),
    LearningKnobs("router as before (all four of the above)", **BEFORE),
    LearningKnobs("router, the registry's prior weight, not learned", learned_prior_weight=False),
    LearningKnobs("router, no long-shot cut", min_best_probability=0.0),
    LearningKnobs("router, day 1 from empty posteriors", cold_start="posterior"),
    LearningKnobs("router, floor 0", exploration_floor=0.0),
    LearningKnobs("router, a fixed 14-day half-life (the design's default)", half_life_days=14.0, steady_half_life_days=14.0),
    LearningKnobs("router, no forgetting", half_life_days=NO_FORGETTING, steady_half_life_days=NO_FORGETTING),
    LearningKnobs("router, pseudo-count 2", prior_pseudo_count=2.0),
    LearningKnobs("router, all four changes", half_life_days=NO_FORGETTING, steady_half_life_days=NO_FORGETTING,
                  prior_pseudo_count=2.0, exploration_floor=0.0, min_best_probability=0.0, cold_start="posterior",
                  cross_task_prior_count=0.0),
)


# ------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class TaskData:
    """Full-information outcomes of one task type: ``correct[question, model]`` in {0, 1}."""

    task: TaskType
    subtasks: tuple[str, ...]
    correct: np.ndarray


@dataclass(frozen=True)
class ReplayData:
    models: tuple[str, ...]
    price_per_million: dict[str, float]
    tasks: dict[TaskType, TaskData]
    note: str  # what had to be dropped for full information


def task_of(subtask: str) -> TaskType:
    for prefix, task in SUBTASK_TASKS:
        if subtask.startswith(prefix):
            return task
    raise ValueError(f"subtask {subtask!r} has no task type mapping; extend SUBTASK_TASKS")


def _grid(task: TaskType, subtasks: Sequence[str], frame: pl.DataFrame, models: Sequence[str]) -> TaskData:
    correct = frame.select(pl.col(m).cast(pl.Float64) for m in models).to_numpy()
    if np.isnan(correct).any():
        raise ValueError(f"{task.value}: missing outcomes; the replay needs full information")
    return TaskData(task, tuple(subtasks), correct)


def load_data(incomplete: str, outcomes_dir: Path = DATA_DIR / OUTCOMES) -> ReplayData:
    """Read the long CSV and the price table; keep a full-information (question × model) grid."""
    long = pl.read_csv(outcomes_dir / CORRECTNESS_NAME, schema_overrides={"correct": pl.Float64})
    all_models = sorted(long["model"].unique().to_list())
    question = ["subtask", "question_idx"]
    n_questions = long.select(question).unique().height
    if incomplete == "drop-questions":
        complete = long.group_by(question).agg(pl.col("model").n_unique().alias("k")).filter(pl.col("k") == len(all_models))
        long = long.join(complete.select(question), on=question, how="semi")
        models = all_models
        note = (f"{len(models)} models; kept the {complete.height} of {n_questions} questions that every model answered")
    elif incomplete == "drop-models":
        counts = long.group_by("model").agg(pl.len().alias("k"))
        models = sorted(counts.filter(pl.col("k") == n_questions)["model"].to_list())
        dropped = sorted(set(all_models) - set(models))
        long = long.filter(pl.col("model").is_in(models))
        note = f"{len(models)} models (dropped, incomplete: {', '.join(dropped) or 'none'}); all {n_questions} questions"
    else:
        raise ValueError(f"unknown --incomplete mode {incomplete!r}")

    price_file = outcomes_dir / PRICE_NAME
    prices = dict(pl.read_csv(price_file).select("model", "usd_per_million_tokens").iter_rows())
    missing = [m for m in models if m not in prices]
    if missing:
        raise ValueError(f"{price_file}: no price for {', '.join(missing)}")

    task_values = {s: task_of(s).value for s in long["subtask"].unique().to_list()}
    wide = (
        long.with_columns(pl.col("subtask").replace_strict(task_values, return_dtype=pl.String).alias("task_type"))
        .pivot(on="model", index=["task_type", *question], values="correct")
        .sort("task_type", *question)
    )
    tasks: dict[TaskType, TaskData] = {}
    for (task_value,), frame in wide.group_by("task_type", maintain_order=True):
        task = TaskType(task_value)
        tasks[task] = _grid(task, sorted(frame["subtask"].unique().to_list()), frame, models)
    tasks = {t: tasks[t] for t in TaskType if t in tasks}  # stable TaskType order
    return ReplayData(tuple(models), {m: float(prices[m]) for m in models}, tasks, note)


ROUTELLM = Path("outcomes") / "routellm"
ROUTELLM_GSM8K = "routellm_evals_gsm8k_gsm8k_responses.csv"
ROUTELLM_MODELS = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
#: Their list prices in the shared LiteLLM price table: (input + output) / 2 per token.
ROUTELLM_PRICE_KEYS = {"mistralai/Mixtral-8x7B-Instruct-v0.1": "together_ai/mistralai/Mixtral-8x7B-Instruct-v0.1",
                       "gpt-4-1106-preview": "gpt-4-1106-preview"}
LITELLM_PRICES = Path("prices") / "litellm-1.110.2_model_prices_and_context_window_backup.json"
ROUTERBENCH = Path("outcomes") / "routerbench_mini" / "per_query_fixed_model.csv"
#: routerbench_mini's task types → ours (function calling → planning, as the data README suggests).
ROUTERBENCH_TASKS = {"math": TaskType.MATH, "mcq": TaskType.GENERAL, "text": TaskType.GENERAL, "vqa": TaskType.GENERAL,
                     "tool": TaskType.PLANNING}


def load_routellm(data_dir: Path) -> ReplayData:
    """RouteLLM's GSM8K (math) and MMLU (general) answers of Mixtral-8x7B and GPT-4-1106, correct or not."""
    folder = data_dir / ROUTELLM
    gsm8k = pl.read_csv(folder / ROUTELLM_GSM8K, columns=list(ROUTELLM_MODELS))
    subjects = sorted((folder / "mmlu_responses").glob("mmlu_*.csv"))
    mmlu = pl.concat([pl.read_csv(f, columns=list(ROUTELLM_MODELS)) for f in subjects])
    table = json.loads((data_dir / LITELLM_PRICES).read_text())
    prices = {m: (table[key]["input_cost_per_token"] + table[key]["output_cost_per_token"]) / 2 * 1e6
              for m, key in ROUTELLM_PRICE_KEYS.items()}
    tasks = {TaskType.MATH: _grid(TaskType.MATH, ["gsm8k"], gsm8k, ROUTELLM_MODELS),
             TaskType.GENERAL: _grid(TaskType.GENERAL, [f.stem for f in subjects], mmlu, ROUTELLM_MODELS)}
    return ReplayData(ROUTELLM_MODELS, prices, tasks, f"2 models; GSM8K {gsm8k.height} and MMLU {mmlu.height} questions")


def load_routerbench(data_dir: Path) -> ReplayData:
    """routerbench_mini's 800 prompts, each answered by both Qwen3.5 models (always-cheap, always-strong)."""
    rows = pl.read_csv(data_dir / ROUTERBENCH)
    models = tuple(sorted(rows["selected_model"].unique().to_list()))
    pivoted = rows.pivot(on="selected_model", index=["canonical_id", "task_type"], values="correct")
    wide = pivoted.drop_nulls().sort("canonical_id")  # full information: prompts both models answered
    # Price per million tokens from the logged costs (in the data's currency, CNY): only ratios matter here.
    tokens = pl.col("prompt_tokens") + pl.col("completion_tokens")
    prices = dict(rows.group_by("selected_model").agg((pl.col("cost").sum() / tokens.sum() * 1e6)).iter_rows())
    tasks = {}
    for task in TaskType:
        mapped = sorted(k for k, v in ROUTERBENCH_TASKS.items() if v is task)
        if mapped:
            tasks[task] = _grid(task, mapped, wide.filter(pl.col("task_type").is_in(mapped)), models)
    return ReplayData(models, prices, tasks, f"2 models on the {wide.height} of {pivoted.height} prompts answered by both")


def registry_toml(models: Sequence[str], price_per_million: dict[str, float], knobs: LearningKnobs) -> str:
    """A registry with every model a generalist, real prices and no prior knowledge of quality."""
    half = TOKENS_PER_REQUEST // 2
    lines = [
        "[defaults]",
        "min_quality_score = 0.0",
        f"typical_input_tokens = {half}",
        f"typical_output_tokens = {TOKENS_PER_REQUEST - half}",
        "",
        "[learning]",
        f"half_life_days = {knobs.half_life_days!r}",
        f"steady_half_life_days = {knobs.steady_half_life_days!r}",
        f"prior_pseudo_count = {knobs.prior_pseudo_count!r}",
        f"cross_task_prior_count = {knobs.cross_task_prior_count!r}",
        f"exploration_floor = {knobs.exploration_floor!r}",
        f"exploration_floor_evidence = {knobs.exploration_floor_evidence!r}",
        f"min_best_probability = {knobs.min_best_probability!r}",
        f"always_explored = {knobs.always_explored!r}",
    ]
    for m in models:
        per_1k = price_per_million[m] / 1000.0  # one blended price: input = output
        lines += [
            "",
            "[[models]]",
            f"id = {json.dumps(m)}",
            f"provider = {json.dumps(m.split('/')[0])}",
            "specialized_for = []",
            f"input_cost_per_1k = {per_1k!r}",
            f"output_cost_per_1k = {per_1k!r}",
            "prior_quality = 0.5",
            f"typical_latency_ms = {LATENCY_MS!r}",
        ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ policies

#: Per task type, the served question indices (length days × per_day), day after day.
Streams = dict[TaskType, np.ndarray]
#: Per task type, the realized quality (0/1) of each served request, in stream order.
Rewards = dict[TaskType, np.ndarray]


def question_streams(data: ReplayData, n: int, rng: np.random.Generator) -> Streams:
    """Shuffled questions per task type; a fresh shuffle (epoch) whenever a task type runs out."""
    streams: Streams = {}
    for task, td in data.tasks.items():
        q = td.correct.shape[0]
        epochs = -(-n // q)
        streams[task] = np.concatenate([rng.permutation(q) for _ in range(epochs)])[:n]
    return streams


def quality_probabilities(rules: Sequence[RuleRow], task: TaskType, models: Sequence[str]) -> np.ndarray:
    """The rule set's selection probabilities for (task, quality), in ``models`` order."""
    share = {r.model_id: r.selection_probability for r in rules if r.task_type is task and r.preference is PREFERENCE}
    p = np.array([share.get(m, 0.0) for m in models], dtype=np.float64)
    return p / p.sum()  # rounded to 1e-6 in the rule rows


def nightly_rules(posteriors: pl.DataFrame, registry: ModelRegistry, seed: int, day: int) -> list[RuleRow]:
    """``candidate_rules`` with a seed per (replay, night).

    Overflow is silenced: the cost and latency draws of cells without evidence are log-normal means
    under an inverse-gamma variance, which overflow to inf once in ~10^7 draws. They feed only the
    cost, balanced and latency objectives, where inf ranks last anyway; quality is not affected.
    """
    with np.errstate(over="ignore"):
        # The learning math as learned: the replay has no decision log for the publication gate to judge by.
        return candidate_rules(posteriors, registry, seed=int(np.random.SeedSequence([seed, day + 1]).generate_state(1)[0])).learned


@dataclass
class RouterTrace:
    rewards: Rewards
    final_top: dict[TaskType, tuple[str, float]] = field(default_factory=dict)  # top model, its share
    nightly_seconds: float = 0.0


def run_router(data: ReplayData, knobs: LearningKnobs, streams: Streams, days: int, per_day: int, seed: int) -> RouterTrace:
    """The product's loop: sample from the rule set by day, learn nightly with the pipeline code."""
    if knobs.learned_prior_weight:
        return _run_router(data, knobs, streams, days, per_day, seed)
    # The ablation of the learned prior weight: no task type ever has enough models to learn it.
    kept = posteriors_module.PRIOR_FIT_MIN_MODELS
    posteriors_module.PRIOR_FIT_MIN_MODELS = 10**9
    try:
        return _run_router(data, knobs, streams, days, per_day, seed)
    finally:
        posteriors_module.PRIOR_FIT_MIN_MODELS = kept


def _run_router(data: ReplayData, knobs: LearningKnobs, streams: Streams, days: int, per_day: int, seed: int) -> RouterTrace:
    registry = ModelRegistry.from_toml(registry_toml(data.models, data.price_per_million, knobs), source="<replay registry>")
    rng = np.random.default_rng([seed, 1])
    models = data.models
    cost = np.array([TOKENS_PER_REQUEST * data.price_per_million[m] / 1e6 for m in models])
    if knobs.cold_start == "registry":
        rules = build_rules(registry_estimates(registry), registry)
    else:
        no_evidence = pl.DataFrame(schema={**STATS_SCHEMA, "n_raw": pl.Float64, "last_day": pl.Date})
        rules = nightly_rules(compute_posteriors(no_evidence, registry), registry, seed, -1)
    rewards = {task: np.empty(days * per_day) for task in data.tasks}
    daily: list[pl.DataFrame] = []
    nightly = 0.0
    for d in range(days):
        day = START_DAY + dt.timedelta(days=d)
        chosen, task_col, quality = [], [], []
        for task, td in data.tasks.items():
            window = slice(d * per_day, (d + 1) * per_day)
            choice = rng.choice(len(models), size=per_day, p=quality_probabilities(rules, task, models))
            q = td.correct[streams[task][window], choice]
            rewards[task][window] = q
            chosen.append(choice)
            task_col += [task.value] * per_day
            quality.append(q)
        choice, q = np.concatenate(chosen), np.concatenate(quality)
        started = time.perf_counter()
        performance = pl.DataFrame({
            "model_id": np.asarray(models, dtype=object)[choice].tolist(),
            "task_type": task_col,
            "outcome": np.where(q > 0.5, "success", "failure").tolist(),
            "quality_score": q,
            "latency_ms": np.full(len(q), LATENCY_MS),
            "tokens_used": np.full(len(q), TOKENS_PER_REQUEST, dtype=np.int64),
            "cost_usd": cost[choice],
        })
        daily.append(daily_stats(performance).with_columns(pl.lit(day).alias("day")))
        posteriors, _ = posteriors_as_of(pl.concat(daily).lazy(), day, registry)
        rules = nightly_rules(posteriors, registry, seed, d)
        nightly += time.perf_counter() - started
    final_top = {}
    for task in data.tasks:
        p = quality_probabilities(rules, task, models)
        final_top[task] = (models[int(p.argmax())], float(p.max()))
    return RouterTrace(rewards, final_top, nightly)


def _run_batched(data: ReplayData, streams: Streams, days: int, per_day: int, choose) -> Rewards:
    """A baseline that picks the day's models from counts frozen at its start and learns nightly:
    ``choose(successes, n)`` returns the day's ``per_day`` model indices."""
    rewards: Rewards = {}
    for task, td in data.tasks.items():
        k = td.correct.shape[1]
        successes, n = np.zeros(k), np.zeros(k)
        out = np.empty(days * per_day)
        for d in range(days):
            window = slice(d * per_day, (d + 1) * per_day)
            choice = choose(successes, n)
            q = td.correct[streams[task][window], choice]
            out[window] = q
            successes += np.bincount(choice, weights=q, minlength=k)
            n += np.bincount(choice, minlength=k)
        rewards[task] = out
    return rewards


def run_thompson(data: ReplayData, streams: Streams, days: int, per_day: int, seed: int) -> Rewards:
    """Plain batched Thompson sampling: Beta(1, 1), posteriors frozen for a day, no floor, no decay."""
    rng = np.random.default_rng([seed, 2])
    return _run_batched(data, streams, days, per_day,
                        lambda s, n: rng.beta(1 + s, 1 + n - s, size=(per_day, len(n))).argmax(axis=1))


EPSILON = 0.1


def run_egreedy(data: ReplayData, streams: Streams, days: int, per_day: int, seed: int) -> Rewards:
    """Batched epsilon-greedy: uniform with probability EPSILON, else the best posterior mean of the day."""
    rng = np.random.default_rng([seed, 4])

    def choose(successes: np.ndarray, n: np.ndarray) -> np.ndarray:
        mean = (successes + 1) / (n + 2)
        leaders = np.flatnonzero(mean == mean.max())
        return np.where(rng.random(per_day) < EPSILON, rng.integers(len(n), size=per_day), rng.choice(leaders, size=per_day))

    return _run_batched(data, streams, days, per_day, choose)


def run_random(data: ReplayData, streams: Streams, seed: int) -> Rewards:
    rng = np.random.default_rng([seed, 3])
    return {
        task: td.correct[streams[task], rng.integers(td.correct.shape[1], size=len(streams[task]))]
        for task, td in data.tasks.items()
    }


# ------------------------------------------------------------------------------ scoring


@dataclass(frozen=True)
class Hindsight:
    """Best fixed model per task type on the served questions, and the per-question oracle."""

    best_model: dict[TaskType, str]
    rewards: Rewards       # the best fixed model's outcome on each served request
    oracle: Rewards
    mean_of_models: dict[TaskType, float]


def hindsight(data: ReplayData, streams: Streams) -> Hindsight:
    best_model, rewards, oracle, mean_of_models = {}, {}, {}, {}
    for task, td in data.tasks.items():
        served = td.correct[streams[task]]
        means = served.mean(axis=0)
        best = int(means.argmax())
        best_model[task] = data.models[best]
        rewards[task] = served[:, best]
        oracle[task] = served.max(axis=1)
        mean_of_models[task] = float(means.mean())
    return Hindsight(best_model, rewards, oracle, mean_of_models)


OVERALL = "overall"


def means(rewards: Rewards, last: int | None = None) -> dict[str, float]:
    """Mean quality per task type and pooled, optionally over the last ``last`` requests of each stream."""
    cut = {t: (r[-last:] if last else r) for t, r in rewards.items()}
    result = {t.value: float(r.mean()) for t, r in cut.items()}
    result[OVERALL] = float(np.concatenate(list(cut.values())).mean())
    return result


def run_repeat(data: ReplayData, days: int, per_day: int, seed: int, ablations: bool) -> dict:
    """One replay: every policy on the same question streams; figures per task type and overall."""
    n = days * per_day
    streams = question_streams(data, n, np.random.default_rng([seed, 0]))
    best = hindsight(data, streams)
    last = min(LAST_DAYS, days) * per_day

    router = run_router(data, ROUTER, streams, days, per_day, seed)
    policies: dict[str, Rewards] = {
        "router": router.rewards,
        "thompson": run_thompson(data, streams, days, per_day, seed),
        "egreedy": run_egreedy(data, streams, days, per_day, seed),
        "random": run_random(data, streams, seed),
        "best_fixed": best.rewards,
        "oracle": best.oracle,
    }
    variants: dict[str, Rewards] = {}
    if ablations:
        variants = {k.label: run_router(data, k, streams, days, per_day, seed).rewards for k in ABLATIONS}
    return {
        "seed": seed,
        "all": {name: means(r) for name, r in {**policies, **variants}.items()},
        "last": {name: means(r, last) for name, r in {**policies, **variants}.items()},
        "best_model": {t.value: m for t, m in best.best_model.items()},
        "mean_of_models": {t.value: v for t, v in best.mean_of_models.items()},
        "router_final_top": {t.value: {"model": m, "share": s} for t, (m, s) in router.final_top.items()},
        "router_nightly_seconds": router.nightly_seconds,
        "variants": list(variants),
    }


# ------------------------------------------------------------------------------ report


def _avg(values: Sequence[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _fmt(mean: float, sd: float, repeats: int, digits: int = 3) -> str:
    return f"{mean:.{digits}f} ± {sd:.{digits}f}" if repeats > 1 else f"{mean:.{digits}f}"


def summarise(runs: list[dict], data: ReplayData, knobs: LearningKnobs) -> dict:
    """Averages over repeats of every figure and ratio, per task type and overall."""
    rows = [t.value for t in data.tasks] + [OVERALL]
    names = list(runs[0]["all"])
    out: dict = {"rows": {}}
    for row in rows:
        entry: dict = {}
        for window in ("all", "last"):
            for name in names:
                entry[f"{name}_{window}"] = _avg([r[window][name][row] for r in runs])
                if name not in ("best_fixed", "oracle"):
                    entry[f"{name}_ratio_{window}"] = _avg([r[window][name][row] / r[window]["best_fixed"][row] for r in runs])
        if row != OVERALL:
            fixed = [r["all"]["best_fixed"][row] for r in runs]
            average = [r["mean_of_models"][row] for r in runs]
            entry["floor_cost"] = _avg([knobs.exploration_floor * (f - a) / f for f, a in zip(fixed, average)])
            models = [r["best_model"][row] for r in runs]
            entry["best_model"] = max(sorted(set(models)), key=models.count)
            entry["best_model_agreement"] = f"{models.count(entry['best_model'])}/{len(models)}"
        out["rows"][row] = entry
    return out


def short(model: str) -> str:
    return model.split("/")[-1]


def markdown(summary: dict, data: ReplayData, repeats: int, ablations: Sequence[str], days: int, per_day: int) -> str:
    rows = summary["rows"]
    served, last_days = days * per_day, min(LAST_DAYS, days)
    fmt = lambda pair, d=3: _fmt(*pair, repeats, d)  # noqa: E731
    lines = [
        f"| task type | questions (served / unique) | best fixed model | best fixed | router | plain TS | ε-greedy | random | oracle "
        f"| router / best | TS / best | ε-greedy / best | router / best, last {last_days} d | TS / best, last {last_days} d "
        f"| ε-greedy / best, last {last_days} d |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row, e in rows.items():
        tasks = list(data.tasks.values()) if row == OVERALL else [data.tasks[TaskType(row)]]
        unique = sum(td.correct.shape[0] for td in tasks)
        n = served * (len(data.tasks) if row == OVERALL else 1)
        model = "per task type" if row == OVERALL else f"{short(e['best_model'])} ({e['best_model_agreement']})"
        lines.append(
            f"| {row} | {n} / {unique} | {model} | {fmt(e['best_fixed_all'])} | {fmt(e['router_all'])} | "
            f"{fmt(e['thompson_all'])} | {fmt(e['egreedy_all'])} | {fmt(e['random_all'])} | {fmt(e['oracle_all'])} | "
            f"{fmt(e['router_ratio_all'])} | {fmt(e['thompson_ratio_all'])} | {fmt(e['egreedy_ratio_all'])} | "
            f"{fmt(e['router_ratio_last'])} | {fmt(e['thompson_ratio_last'])} | {fmt(e['egreedy_ratio_last'])} |"
        )
    task_rows = [r for r in rows if r != OVERALL]
    lines.append("")
    lines.append("Exploration floor cost, floor × (best fixed − mean of all models) / best fixed: " + ", ".join(
        f"{r} {fmt(rows[r]['floor_cost'], 3)}" for r in task_rows))
    if ablations:
        lines += [
            "",
            f"Where the gap comes from: ratio to the best fixed model, whole replay | last {last_days} days.",
            "",
            "| policy | " + " | ".join(rows) + " |",
            "|---|" + "---|" * len(rows),
        ]
        for name, key in [("plain batched TS", "thompson"), (ROUTER.label, "router"), *[(a, a) for a in ablations]]:
            cells = [f"{fmt(rows[r][f'{key}_ratio_all'])} \\| {fmt(rows[r][f'{key}_ratio_last'])}" for r in rows]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def code_version() -> str:
    """The project's git commit, marked dirty when the learning code differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        def git(*args: str) -> str:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True).stdout.strip()

        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "pipelines", "routing_runtime")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{commit}{' + uncommitted changes to pipelines/ or routing_runtime/' if dirty else ''}"


#: ``--quick``: three nights of learning on a few questions per task type, one repeat.
QUICK = {"days": 3, "per_day": 20, "repeats": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=20, help="days replayed (default 20)")
    parser.add_argument("--per-day", type=int, default=300, help="requests per task type per day (default 300)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first repeat (default 0)")
    parser.add_argument("--repeats", type=int, default=15, help="independent replays, seeds seed..seed+repeats-1 (default 15)")
    parser.add_argument("--source", choices=("all", *SOURCES), default="all",
                        help="which real-data replay (default all: each whose data is present)")
    parser.add_argument("--incomplete", choices=("drop-questions", "drop-models"), default="drop-questions",
                        help="full information: keep questions every model answered (default), or models that answered all")
    parser.add_argument("--ablations", action="store_true",
                        help="also replay the router variants with one learning choice changed (about 6x the runtime)")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON to PATH")
    parser.add_argument("--data", metavar="DIR", type=Path, default=DATA_DIR,
                        help="the shared data folder (default ../shared/data beside the project)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, seconds: proves the benchmark still runs end to end (`make test`); figures mean nothing")
    args = parser.parse_args(argv)
    if args.quick:  # the quick sizes replace the defaults only: options given explicitly still win
        parser.set_defaults(**QUICK)
        args = parser.parse_args(argv)
    if args.days < 1 or args.per_day < 1 or args.repeats < 1:
        parser.error("--days, --per-day and --repeats must be at least 1")

    command = shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(["bench_replay.py", *argv])
    version = code_version()
    payloads = {}
    for name in SOURCES if args.source == "all" else [args.source]:
        source = SOURCES[name]
        missing = [path for path in source.files if not (args.data / path).is_file()]
        if missing:
            print(f"SKIP bench_replay: real outcome data not found at {args.data / missing[0]} "
                  f"({source.title}, not shipped; expected in ../shared/data beside the project, or --data DIR)")
            continue
        payloads[name] = replay_source(name, source, args, command, version)
    if args.json and payloads:
        payload = {
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
            "command": command,
            "code_version": version,
            "settings": {"days": args.days, "per_day": args.per_day, "seed": args.seed, "repeats": args.repeats,
                         "incomplete": args.incomplete, "last_days": LAST_DAYS, "tokens_per_request": TOKENS_PER_REQUEST},
            "sources": payloads,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nJSON written to {args.json}")
    return 0


@dataclass(frozen=True)
class Source:
    """One real-data replay: what it is, the files it reads (under the data folder), its loader."""

    title: str
    files: tuple[Path, ...]
    load: Callable[[Path, str], ReplayData]


#: Every replay on real per-question outcomes in ../shared/data (`--source all`, the default, runs each).
SOURCES = {
    "openllm_v2": Source("Open LLM Leaderboard v2 outcomes, 19 open models", (OUTCOMES / CORRECTNESS_NAME, OUTCOMES / PRICE_NAME),
                         lambda data_dir, incomplete: load_data(incomplete, data_dir / OUTCOMES)),
    "routellm": Source("RouteLLM's GSM8K and MMLU answers, Mixtral-8x7B against GPT-4", (ROUTELLM / ROUTELLM_GSM8K, LITELLM_PRICES),
                       lambda data_dir, _: load_routellm(data_dir)),
    "routerbench_mini": Source("routerbench_mini, two Qwen3.5 models on the same 800 prompts", (ROUTERBENCH,),
                               lambda data_dir, _: load_routerbench(data_dir)),
}


def replay_source(name: str, source: Source, args: argparse.Namespace, command: str, version: str) -> dict:
    """Replays one source ``args.repeats`` times and prints its report; returns its JSON figures."""
    started = time.perf_counter()
    data = source.load(args.data, args.incomplete)
    load_seconds = time.perf_counter() - started
    runs = [run_repeat(data, args.days, args.per_day, args.seed + r, args.ablations) for r in range(args.repeats)]
    summary = summarise(runs, data, ROUTER)
    elapsed = time.perf_counter() - started
    print(f"## Replay benchmark ({source.title}) — {platform.platform()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, numpy {np.__version__}, polars {pl.__version__}")
    print(f"command: `{command}`; source `{name}`; code: {version}")
    print(f"data: {data.note}; {args.days} days × {args.per_day} requests per task type per day; "
          f"{args.repeats} repeat(s), seeds {args.seed}..{args.seed + args.repeats - 1}"
          + (" (figures are mean ± sd across repeats)" if args.repeats > 1 else ""))
    print(f"router: {len(data.models)} generalists, prior_quality 0.5, real prices, half-life {ROUTER.half_life_days:g} d, "
          f"pseudo-count ≤ {ROUTER.prior_pseudo_count:g} (learned), exploration floor {ROUTER.exploration_floor:g}; preference quality\n")
    print(markdown(summary, data, args.repeats, runs[0]["variants"], args.days, args.per_day))
    tops = "; ".join(f"{t} {short(v['model'])} {v['share']:.0%}" for t, v in runs[0]["router_final_top"].items())
    print(f"\nrouter's last rule set (seed {args.seed}), top model and its share: {tops}")
    nightly = sum(r["router_nightly_seconds"] for r in runs) / len(runs)
    print(f"runtime: {elapsed:.1f} s total (data load {load_seconds:.1f} s; router nightly learning {nightly:.1f} s per replay)\n")
    return {
        "title": source.title,
        "data": {
            "note": data.note,
            "models": list(data.models),
            "tasks": {t.value: {"questions": td.correct.shape[0], "subtasks": list(td.subtasks)} for t, td in data.tasks.items()},
        },
        "summary": summary,
        "runs": runs,
        "runtime_seconds": elapsed,
    }


if __name__ == "__main__":
    sys.exit(main())
