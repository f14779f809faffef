"""Task-type classification: accuracy on labelled and real prompts, and the function's contract."""

from __future__ import annotations

import csv
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

from conftest import TESTS_DATA
from routing_runtime import TaskType, classify_task

LABELLED = TESTS_DATA / "labelled_prompts.jsonl"
MMLU_EXCLUDED_SUBJECTS = (
    "mathematics", "algebra", "statistics", "physics", "chemistry", "machine_learning",
    "econometrics", "computer_science", "computer_security",
)


def _labelled() -> list[dict]:
    with LABELLED.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _read_prompts(path) -> list[str]:
    csv.field_size_limit(sys.maxsize)
    with open(path, newline="", encoding="utf-8") as f:
        return [row["prompt"] for row in csv.DictReader(f)]


# ----------------------------------------------------------------------------- accuracy

def test_labelled_prompts_accuracy_per_task_type():
    rows = _labelled()
    assert len(rows) == 230
    total, correct = Counter(), Counter()
    confusions = Counter()
    for row in rows:
        predicted = classify_task(row["text"]).task_type.value
        total[row["task_type"]] += 1
        if predicted == row["task_type"]:
            correct[row["task_type"]] += 1
        else:
            confusions[(row["task_type"], predicted)] += 1

    unlabelled = [t.value for t in TaskType if not total[t.value]]
    assert not unlabelled, f"no labelled prompts for {unlabelled}: add some to tests/data/labelled_prompts.jsonl"
    overall = sum(correct.values()) / len(rows)
    per_type = {t.value: correct[t.value] / total[t.value] for t in TaskType}
    print(f"\n{'task type':<16} {'n':>4} {'correct':>7} {'accuracy':>8}")
    for t in TaskType:
        print(f"{t.value:<16} {total[t.value]:>4} {correct[t.value]:>7} {per_type[t.value]:>8.3f}")
    print(f"{'overall':<16} {len(rows):>4} {sum(correct.values()):>7} {overall:>8.3f}")
    print("confusions (true -> predicted):", dict(confusions))

    assert set(total) == {t.value for t in TaskType}, "every task type is represented"
    assert overall >= 0.90
    weak = {t: round(a, 3) for t, a in per_type.items() if a < 0.80}
    assert not weak, f"task types below 0.80 accuracy: {weak}"


def test_gsm8k_prompts_are_math(shared_data):
    path = shared_data / "outcomes" / "routellm" / "routellm_evals_gsm8k_gsm8k_responses.csv"
    if not path.is_file():
        pytest.skip(f"{path.name} not present in ../shared/data")
    prompts = _read_prompts(path)
    assert len(prompts) > 1000
    predicted = Counter(classify_task(p).task_type.value for p in prompts)
    share = predicted["math"] / len(prompts)
    print(f"\nGSM8K: {len(prompts)} prompts, math share {share:.3f}, {dict(predicted)}")
    assert share >= 0.85


def _mmlu_sample(shared: Path, n: int = 1000, seed: int = 20251126) -> list[tuple[str, str]]:
    folder = shared / "outcomes" / "routellm" / "mmlu_responses"
    files = sorted(folder.glob("*.csv"))
    if not files:
        pytest.skip("mmlu_responses not present in ../shared/data")
    population = []
    for path in files:
        if any(s in path.name for s in MMLU_EXCLUDED_SUBJECTS):
            continue
        population.extend((path.stem, p) for p in _read_prompts(path))
    assert len(population) >= n
    return random.Random(seed).sample(population, n)


#: Below the contract threshold, but a floor so that the classifier does not get worse unnoticed.
MMLU_REGRESSION_FLOOR = 0.70


def _mmlu_general_share(shared) -> float:
    sample = _mmlu_sample(shared)
    predicted = Counter(classify_task(p).task_type.value for _, p in sample)
    share = predicted["general"] / len(sample)
    print(f"\nMMLU (non-STEM, seeded sample of {len(sample)}): general share {share:.3f}, {dict(predicted)}")
    return share


def test_mmlu_prompts_do_not_regress(shared_data):
    assert _mmlu_general_share(shared_data) >= MMLU_REGRESSION_FLOOR


def test_mmlu_prompts_are_general(shared_data):
    assert _mmlu_general_share(shared_data) >= 0.80


# ----------------------------------------------------------------------------- contract

def test_classification_is_deterministic():
    rows = _labelled()
    first = [classify_task(r["text"]) for r in rows]
    second = [classify_task(r["text"]) for r in rows]
    for a, b in zip(first, second):
        assert (a.task_type, a.confidence, a.matched, a.scores) == (b.task_type, b.confidence, b.matched, b.scores)


def test_confidence_in_unit_interval_and_matched_for_non_general():
    texts = [r["text"] for r in _labelled()] + ["", "   ", "hello", "x" * 10_000]
    for text in texts:
        c = classify_task(text)
        assert isinstance(c.task_type, TaskType)
        assert 0.0 < c.confidence <= 1.0, (text[:60], c.confidence)
        if c.task_type is not TaskType.GENERAL:
            assert c.matched, f"non-general classification without matched features: {text[:60]!r}"
            assert all(isinstance(m, str) and m for m in c.matched)


@pytest.mark.parametrize("value", [None, 123, 1.5, b"fix this bug", ["write a function"], {"text": "x"}])
def test_non_string_input_raises_value_error(value):
    with pytest.raises(ValueError, match="text"):
        classify_task(value)


def test_very_long_prompt_with_traceback_at_the_end_is_debugging():
    filler = "The nightly import reads the customer records from the queue and stores them in the warehouse.\n"
    body = filler * (50_000 // len(filler) + 1)
    traceback = (
        "Traceback (most recent call last):\n"
        '  File "/srv/app/importer.py", line 88, in run\n'
        "    record = parse(row)\n"
        '  File "/srv/app/importer.py", line 41, in parse\n'
        '    return Customer(id=row["id"], email=row["email"])\n'
        "KeyError: 'email'\n"
    )
    text = body + traceback
    assert len(text) >= 50_000
    c = classify_task(text)
    assert c.task_type is TaskType.DEBUGGING, (c.task_type, c.scores)
    assert c.matched


# ----------------------------------------------------------------------------- the learned model and its corpus

def test_corrupted_model_file_fails_with_what_to_do(tmp_path, monkeypatch):
    from routing_runtime import classifier

    broken = tmp_path / "classifier_model.json"
    broken.write_text('{"format": 1, "task_types": ["math"', encoding="utf-8")
    monkeypatch.setattr(classifier, "MODEL_FILE", broken)
    monkeypatch.setattr(classifier, "_model", None)
    with pytest.raises(RuntimeError, match=r"classifier_model.json cannot be read .*reinstall routing-runtime"):
        classify_task("Write a function that adds two numbers")


def test_matched_names_rules_words_and_openings():
    c = classify_task("Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'id'")
    assert c.task_type is TaskType.DEBUGGING and c.matched
    assert "traceback" in c.matched or "rules say debugging" in c.matched, c.matched
    assert abs(sum(c.scores.values()) - 1.0) < 1e-3 and max(c.scores, key=c.scores.get) is TaskType.DEBUGGING


def test_low_confidence_property_follows_the_threshold():
    from routing_runtime.classifier import LOW_CONFIDENCE

    assert classify_task("zxqv").low_confidence and classify_task("zxqv").confidence < LOW_CONFIDENCE
    assert not classify_task("Write pytest unit tests for parse_date()").low_confidence


def _corpus():
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import classifier_corpus

    return classifier_corpus


def test_shipped_corpus_only_holds_redistributable_texts_and_references_the_rest():
    corpus = _corpus()
    shipped = [json.loads(line) for line in corpus.COLLECTED.read_text(encoding="utf-8").splitlines()]
    references = [json.loads(line) for line in corpus.REFERENCES.read_text(encoding="utf-8").splitlines()]
    assert shipped and references
    assert {r["licence"] for r in shipped} <= corpus.SHIPPED_LICENCES
    assert not any("text" in r for r in references), "a referenced prompt's text must not be shipped"
    assert all(r["licence"] not in corpus.SHIPPED_LICENCES for r in references)
    digests = [r["sha256"] for r in references] + [corpus.digest(r["text"]) for r in shipped]
    assert len(set(digests)) == len(digests), "a prompt is listed twice"
    for row in shipped + references:
        TaskType(row["task_type"])
        assert row["split"] in ("train", "held_out") and row["source"]
    texts = [r["text"] for r in shipped]
    assert all(corpus.hashed_split(t, 0.6) == r["split"] for t, r in zip(texts, shipped)), "splits are the hash's"


def test_texts_that_match_no_reference_are_refused(tmp_path):
    corpus = _corpus()
    wrong = tmp_path / "texts.jsonl"
    wrong.write_text(json.dumps({"text": "not one of ours"}) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"texts=.*none of its texts matches a digest in references.jsonl"):
        corpus.collected(wrong)
    assert len(corpus.collected()) == len(corpus.COLLECTED.read_text(encoding="utf-8").splitlines())


def test_appending_to_the_corpus_keeps_every_row_and_split_and_adds_only_new_texts(tmp_path, monkeypatch):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import build_classifier_corpus as builder

    corpus = _corpus()
    collected, references = tmp_path / "prompts.jsonl", tmp_path / "references.jsonl"
    collected.write_bytes(corpus.COLLECTED.read_bytes())
    references.write_bytes(corpus.REFERENCES.read_bytes())
    monkeypatch.setattr(builder, "COLLECTED", collected)
    monkeypatch.setattr(builder, "REFERENCES", references)
    existing = json.loads(corpus.COLLECTED.read_text(encoding="utf-8").splitlines()[0])
    new = {"text": "Write a Zig program that prints the first 10 primes.", "task_type": "code_generation",
           "origin": "dataset:example", "source": "example/repo@0:questions.jsonl#1", "licence": "Apache-2.0"}
    inputs = tmp_path / "new.jsonl"
    inputs.write_text("".join(json.dumps(r) + "\n" for r in (
        {**new, "text": "  " + existing["text"].upper() + " "},           # the same text, case and spaces aside
        new,
        {**new, "text": "Summarise this memo.", "licence": "CC-BY-NC-4.0"},  # non-commercial: dropped
    )), encoding="utf-8")

    assert builder.main(["--append", str(inputs)]) == 0

    before = corpus.COLLECTED.read_text(encoding="utf-8")
    after = collected.read_text(encoding="utf-8")
    assert after.startswith(before), "rows already in the corpus are kept as they were, in order"
    added = [json.loads(line) for line in after[len(before):].splitlines()]
    assert [r["text"] for r in added] == [new["text"]]
    assert added[0]["split"] == corpus.hashed_split(new["text"], 0.6)
    assert references.read_bytes() == corpus.REFERENCES.read_bytes()


def _trainer():
    pytest.importorskip("scipy")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import train_classifier

    return train_classifier


def test_an_anchored_fit_keeps_the_anchors_features_and_holds_to_its_weights_as_the_penalty_grows(tmp_path):
    np = pytest.importorskip("numpy")
    trainer = _trainer()
    corpus = _corpus()
    anchor = trainer.read_anchor(Path(trainer.MODEL_FILE))
    rows = [corpus.Prompt("write a python function that parses dates", TaskType.CODE_GENERATION, "own", "train"),
            corpus.Prompt("write a python function that sorts a list", TaskType.CODE_GENERATION, "own", "train"),
            corpus.Prompt("what is the capital of france", TaskType.GENERAL, "own", "train"),
            corpus.Prompt("what is the tallest mountain", TaskType.GENERAL, "own", "train")]
    vocabulary = trainer.build_vocabulary(rows, anchor)
    assert set(anchor) <= set(vocabulary), "a feature only the anchor knows (learned from texts not at hand) is kept"
    assert {"!" + name for name in json.loads(Path(trainer.MODEL_FILE).read_text())["rules"]} <= set(vocabulary)
    x = trainer.design(rows, vocabulary)
    labels = np.array([trainer.TYPES.index(p.task_type) for p in rows])
    w0 = trainer.anchor_matrix(vocabulary, anchor)
    held, _ = trainer.fit(x, labels, 1e4, w0)
    free, _ = trainer.fit(x, labels, 1e-3, w0)
    assert np.abs(held - w0).max() < 1e-2 < np.abs(free - w0).max()
    unanchored, _ = trainer.fit(x, labels, 1e4)
    assert np.abs(unanchored).max() < 1e-2, "without an anchor a strong penalty pulls to zero"


@pytest.mark.parametrize("content, why", [
    ("not json", "Expecting value"),
    (json.dumps({"task_types": ["math", "general"], "words": {}, "pairs": {}, "rules": {}}), "task_types"),
    (json.dumps({"task_types": [t.value for t in TaskType]}), "words"),
])
def test_an_anchor_that_is_not_a_model_file_is_refused_naming_the_file(tmp_path, content, why):
    trainer = _trainer()
    bad = tmp_path / "model.json"
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(SystemExit, match=rf"--anchor {re.escape(str(bad))}: not a model file this script wrote \(.*{why}"):
        trainer.read_anchor(bad)
