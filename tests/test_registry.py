"""The model registry: the shipped file, and every way a registry file can be wrong."""

from __future__ import annotations

import hashlib

import pytest

from routing_runtime import ModelRegistry, RegistryError, TaskType
from routing_runtime import cli
from routing_runtime.admin import initialise

# ----------------------------------------------------------------------------- shipped registry


def test_shipped_registry_loads_with_story_models():
    registry = ModelRegistry.load_default()
    ids = [m.id for m in registry.models]
    assert len(ids) >= 7
    assert len(set(ids)) == len(ids)

    code_tasks = (TaskType.CODE_GENERATION, TaskType.CODE_REVIEW, TaskType.DEBUGGING, TaskType.TESTING)
    for task in code_tasks:
        assert any("codestral" in m.id.lower() for m in registry.specialized.get(task, [])), task
    math_specialists = registry.specialized.get(TaskType.MATH, [])
    assert any("qwen" in m.id.lower() and "math" in m.id.lower() for m in math_specialists)

    generalists = {m.id: m for m in registry.generalist}
    assert "claude-sonnet-4-5" in generalists
    assert "gpt-4o" in generalists
    cheap = [m for m in registry.generalist if m.input_cost_per_1k < 0.001 and m.output_cost_per_1k < 0.001]
    assert len(cheap) >= 2, [m.id for m in cheap]
    assert all(m.is_generalist for m in registry.generalist)
    for model in registry.models:
        assert 0 <= model.prior_quality <= 1
        assert model.typical_latency_ms > 0
        assert model.enabled
    assert set(registry.task_policies) == set(TaskType)


# ----------------------------------------------------------------------------- error paths

GOOD_MODEL = """\
[[models]]
id = "alpha"
provider = "acme"
specialized_for = ["math"]
input_cost_per_1k = 0.001
output_cost_per_1k = 0.002
prior_quality = 0.8
typical_latency_ms = 1000
"""


def _model(**overrides) -> str:
    """One [[models]] table for id 'bad-model'; ``overrides`` replace fields, None removes one."""
    fields = {
        "id": '"bad-model"',
        "provider": '"acme"',
        "specialized_for": '["code_generation"]',
        "input_cost_per_1k": "0.001",
        "output_cost_per_1k": "0.002",
        "prior_quality": "0.8",
        "typical_latency_ms": "1000",
    }
    fields.update(overrides)
    body = "\n".join(f"{k} = {v}" for k, v in fields.items() if v is not None)
    return f"[[models]]\n{body}\n"


def _load_error(write_registry, text: str) -> tuple[str, str]:
    path = write_registry(text)
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(path)
    assert isinstance(info.value, ValueError), "RegistryError is a ValueError"
    return str(info.value), str(path)


MODEL_FIELD_ERRORS = [
    pytest.param({"prior_quality": None}, "prior_quality", id="missing-required-field"),
    pytest.param({"typical_latency_ms": None}, "typical_latency_ms", id="missing-latency"),
    pytest.param({"input_cost_per_1k": '"cheap"'}, "input_cost_per_1k", id="bad-type-string"),
    pytest.param({"output_cost_per_1k": "true"}, "output_cost_per_1k", id="bad-type-bool"),
    pytest.param({"enabled": '"yes"'}, "enabled", id="bad-type-enabled"),
    pytest.param({"specialized_for": '"math"'}, "specialized_for", id="bad-type-specialized"),
    pytest.param({"provider": "3"}, "provider", id="bad-type-provider"),
    pytest.param({"prior_quality": "1.5"}, "prior_quality", id="prior-quality-above-1"),
    pytest.param({"prior_quality": "-0.1"}, "prior_quality", id="prior-quality-negative"),
    pytest.param({"prior_quality": "nan"}, "prior_quality", id="prior-quality-nan"),
    pytest.param({"input_cost_per_1k": "-0.001"}, "input_cost_per_1k", id="negative-cost"),
    pytest.param({"typical_latency_ms": "0"}, "typical_latency_ms", id="zero-latency"),
    pytest.param({"off_specialty_prior_quality": "2"}, "off_specialty_prior_quality", id="off-specialty-range"),
    pytest.param({"specialized_for": '["math", "cooking"]'}, "specialized_for", id="unknown-specialized-task"),
]


@pytest.mark.parametrize("overrides, field", MODEL_FIELD_ERRORS)
def test_model_error_names_file_model_and_field(write_registry, overrides, field):
    message, path = _load_error(write_registry, GOOD_MODEL + "\n" + _model(**overrides))
    assert path in message
    assert "bad-model" in message
    assert field in message
    assert "models[1]" in message, "the position of the bad entry is named too"


def test_unknown_specialized_task_names_the_value(write_registry):
    message, _ = _load_error(write_registry, _model(specialized_for='["cooking"]'))
    assert "cooking" in message


def test_unknown_model_field_names_file_model_and_field(write_registry):
    message, path = _load_error(write_registry, _model(prior_qualty="0.8"))
    assert path in message
    assert "prior_qualty" in message
    assert "bad-model" in message
    assert "models[0]" in message


@pytest.mark.parametrize("bad_id", ['""', "42", '"   "'])
def test_bad_model_id(write_registry, bad_id):
    message, path = _load_error(write_registry, _model(id=bad_id))
    assert path in message
    assert "'id'" in message


def test_missing_model_id(write_registry):
    message, path = _load_error(write_registry, _model(id=None))
    assert path in message and "'id'" in message and "models[0]" in message


def test_duplicate_model_id(write_registry):
    message, path = _load_error(write_registry, _model() + "\n" + _model())
    assert path in message
    assert "bad-model" in message
    assert "duplicate" in message and "id" in message
    assert "models[1]" in message


def test_unknown_task_table(write_registry):
    message, path = _load_error(write_registry, "[tasks.nonsense]\nmin_quality_score = 0.5\n\n" + GOOD_MODEL)
    assert path in message
    assert "nonsense" in message
    assert "tasks" in message


@pytest.mark.parametrize("table, body, field", [
    ("tasks.math", "min_quality_score = 1.5", "min_quality_score"),
    ("tasks.math", "max_cost_per_1k = \"free\"", "max_cost_per_1k"),
    ("tasks.math", "min_quality = 0.5", "min_quality"),
    ("defaults", "min_quality_score = -1", "min_quality_score"),
    ("learning", "exploration_floor = 0.9", "exploration_floor"),
    ("learning", "half_lif_days = 3", "half_lif_days"),
])
def test_policy_and_learning_errors_name_file_table_and_field(write_registry, table, body, field):
    message, path = _load_error(write_registry, f"[{table}]\n{body}\n\n" + GOOD_MODEL)
    assert path in message
    assert f"[{table}]" in message
    assert field in message


def test_unknown_top_level_table(write_registry):
    message, path = _load_error(write_registry, "[default]\nmin_quality_score = 0.5\n\n" + GOOD_MODEL)
    assert path in message and "default" in message


def test_invalid_toml(write_registry):
    message, path = _load_error(write_registry, GOOD_MODEL + "\nprior_quality = = 0.3\n")
    assert path in message
    assert "TOML" in message


@pytest.mark.parametrize("text", ["", "[defaults]\nmin_quality_score = 0.5\n", "models = []\n"])
def test_no_models(write_registry, text):
    message, path = _load_error(write_registry, text)
    assert path in message
    assert "models" in message


def test_missing_file(tmp_path):
    path = tmp_path / "does-not-exist.toml"
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(path)
    assert str(path) in str(info.value)


def test_unreadable_file_directory(tmp_path):
    path = tmp_path / "a-directory.toml"
    path.mkdir()
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(path)
    assert str(path) in str(info.value)


def test_unreadable_file_not_utf8(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes(GOOD_MODEL.replace("acme", "acm\xe9").encode("latin-1"))
    with pytest.raises(RegistryError) as info:
        ModelRegistry.load(path)
    assert str(path) in str(info.value)


def test_valid_custom_registry_loads(write_registry):
    path = write_registry(
        "[tasks.math]\nmin_quality_score = 0.8\nmax_cost_per_1k = 0.02\n\n" + GOOD_MODEL + "\n" + _model(id='"beta"')
    )
    registry = ModelRegistry.load(path)
    assert [m.id for m in registry.models] == ["alpha", "beta"]
    assert registry.policy(TaskType.MATH).min_quality_score == 0.8
    assert registry.policy(TaskType.MATH).max_cost_per_1k == 0.02
    assert registry.policy(TaskType.GENERAL).min_quality_score == 0.7
    assert str(path) == registry.source


# ----------------------------------------------------------------------------- routing init --registry


def _bad_registry(write_registry):
    return write_registry(_model(prior_quality="1.5"), name="bad.toml")


def test_cli_init_with_bad_registry_writes_nothing(tmp_path, write_registry, capsys):
    bad = _bad_registry(write_registry)
    home = tmp_path / "fresh-home"
    code = cli.main(["init", "--home", str(home), "--registry", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and "prior_quality" in err and "bad-model" in err
    assert len(err.strip().splitlines()) == 1
    assert not home.exists(), "nothing may be created for a bad registry"


def test_cli_init_with_bad_registry_leaves_existing_home_unchanged(tmp_path, write_registry, capsys):
    home = tmp_path / "home"
    initialise(home)
    db = home / "routing.db"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir() if p.is_file()}
    bad = _bad_registry(write_registry)
    assert cli.main(["init", "--home", str(home), "--registry", str(bad)]) == 2
    assert "prior_quality" in capsys.readouterr().err
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in home.iterdir() if p.is_file()}
    assert db.exists()
    assert after == before


# ----------------------------------------------------------------------------- learning settings

ALL_LEARNING = """
[learning]
half_life_days = 7
steady_half_life_days = 90.0
drift_window_days = 5
drift_z_threshold = 4.0
prior_pseudo_count = 4.0
cross_task_prior_count = 12.0
exploration_floor = 0.1
exploration_floor_evidence = 250.0
min_best_probability = 0.02
always_explored = 4
credible_level = 0.8
thompson_draws = 500
plausibly_eligible = 0.1
evaluation_window_days = 3
change_z_threshold = 4.0
change_min_quality_shift = 0.2
change_min_ratio_shift = 2.0
change_min_day_count = 10
change_discount = 0.1
max_run_days = 60
max_quarantined_share = 0.25
gate_level = 0.9
gate_margin = 0.1
gate_min_effective_samples = 80
gate_max_untied_share = 0.3
gate_max_unsupported_share = 0.1

"""


def test_every_learning_setting_comes_from_the_registry_and_survives_the_home(write_registry, tmp_path):
    from dataclasses import asdict, fields

    from routing_runtime.registry import LearningSettings
    from routing_runtime.store import Store

    registry = ModelRegistry.load(write_registry(ALL_LEARNING + GOOD_MODEL))
    learning = registry.learning
    assert {f.name for f in fields(LearningSettings)} == set(asdict(learning))
    assert all(getattr(learning, f.name) != f.default for f in fields(LearningSettings)), "the file sets every field"
    assert learning.max_run_days == 60 and isinstance(learning.max_run_days, int)
    assert learning.half_life_days == 7.0 and isinstance(learning.half_life_days, float)
    again = ModelRegistry.load(write_registry(registry.to_toml(), name="again.toml"))
    assert again.learning == learning
    home = tmp_path / "home"
    initialise(home, write_registry(ALL_LEARNING + GOOD_MODEL, name="home.toml"))
    with Store.open_home(home) as db:
        assert db.registry().learning == learning


@pytest.mark.parametrize("body, message", [
    ("max_run_days = 0", "field 'max_run_days' = 0 must be within [1, 36500]"),
    ("thompson_draws = 100.5", "field 'thompson_draws' = 100.5 must be a whole number"),
    ("credible_level = 1.0", "field 'credible_level' = 1.0 must be within [0.5, 0.999]"),
    ("change_discount = \"none\"", "field 'change_discount' = 'none' must be a number"),
    ("max_quarantined_share = nan", "field 'max_quarantined_share' = nan must be a number"),
    ("min_best_probability = 0.6", "field 'min_best_probability' = 0.6 must be within [0.0, 0.5]"),
    ("always_explored = -1", "field 'always_explored' = -1 must be within [0, 1000000]"),
    ("always_explored = 2.5", "field 'always_explored' = 2.5 must be a whole number"),
    ("cross_task_prior_count = -1", "field 'cross_task_prior_count' = -1 must be within [0.0, inf]"),
])
def test_a_bad_learning_setting_is_named_with_its_value_and_range(write_registry, body, message):
    text, path = _load_error(write_registry, f"[learning]\n{body}\n\n" + GOOD_MODEL)
    assert path in text and "[learning]" in text and message in text


def test_learning_settings_built_in_code_are_checked_too():
    from routing_runtime.registry import LearningSettings

    with pytest.raises(ValueError, match=r"LearningSettings: field 'evaluation_window_days' = 0 must be within \[1, 3650\]"):
        LearningSettings(evaluation_window_days=0)


def test_the_readmes_registry_example_loads(write_registry):
    from conftest import PROJECT_ROOT

    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    example = readme.split("## The registry", 1)[1].split("```toml\n", 1)[1].split("```", 1)[0]
    registry = ModelRegistry.load(write_registry(example))
    assert registry.learning.credible_level == 0.9 and registry.learning.half_life_days == 14
