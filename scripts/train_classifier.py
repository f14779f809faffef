"""Train the task classifier's weights and write ``routing_runtime/classifier_model.json``.

Run from the project root with the [pipeline] extra (NumPy, SciPy) and ``../shared/data``:

    .venv/bin/python scripts/train_classifier.py [--data ../shared/data] [--texts PATH] [--out PATH]

The model is a multinomial logistic regression over binary features that
``routing_runtime.classifier.features`` extracts (words, word pairs, the hand-written rules that
fire). It is trained on the train split of ``benchmarks/classifier_corpus.py`` only, each task type
weighted equally; the L2 strength is chosen by 5-fold cross-validation on those rows. The held-out
rows are not read here at all: ``benchmarks/bench_classifier.py`` judges the result on them.

``--anchor MODEL`` (a model file this script wrote before) centres the L2 penalty on that model's
weights instead of on zero, and keeps every feature it has: what it learned from prompts that are
no longer at hand (the referenced texts, when ``--texts`` is not passed) is kept unless the rows
at hand argue against it, and new rows move it as far as they do. Cross-validation then chooses
how strongly the old weights hold.

The output is deterministic for the same inputs (no random draw; folds by a hash of the text), so a
rebuild on another machine gives the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from scipy import optimize, sparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from classifier_corpus import DEFAULT_DATA, Prompt, collected, own, shared  # noqa: E402

from routing_runtime import TaskType  # noqa: E402
from routing_runtime.classifier import MODEL_FILE, features  # noqa: E402

TYPES = tuple(TaskType)
#: At most this many train prompts of GSM8K, and per MMLU subject: the shared data sets are large,
#: and without a cap two styles of prompt (word problems, four-option quizzes) would drown the rest.
GSM8K_TRAIN_CAP = 300
MMLU_TRAIN_PER_SUBJECT = 8
#: A word or pair must occur in this many train prompts to get a weight (rules always do).
MIN_DOCUMENTS = 2
#: Weights smaller than this in every column are dropped from the shipped file (they cannot move a
#: decision), and the rest are rounded: the file stays small and loads in milliseconds.
PRUNE_BELOW = 0.02
DIGITS = 3
L2_GRID = (1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
FOLDS = 5


def train_rows(data: Path, texts: Path | None) -> list[Prompt]:
    rows = [p for p in collected(texts) if p.split == "train"] + own()
    from_shared = [p for p in shared(data) if p.split == "train"]
    if not from_shared:
        sys.exit(f"the shared data is not at {data}: pass --data (GSM8K, MMLU and MT-Bench are trained on)")
    rng = random.Random(0)
    gsm8k = [p for p in from_shared if p.origin == "dataset:gsm8k"]
    rows += rng.sample(gsm8k, min(GSM8K_TRAIN_CAP, len(gsm8k)))
    subjects: dict[str, list[Prompt]] = {}
    for p in from_shared:
        if p.origin == "dataset:mmlu":
            subjects.setdefault(p.group, []).append(p)
    for subject in sorted(subjects):
        rows += rng.sample(subjects[subject], min(MMLU_TRAIN_PER_SUBJECT, len(subjects[subject])))
    rows += [p for p in from_shared if p.origin == "dataset:mt-bench"]
    return rows


def feature_keys(text: str) -> set[str]:
    """The features as strings: words as they are, pairs joined by a space, rules prefixed."""
    words, pairs, rules = features(text)
    return words | {" ".join(p) for p in pairs} | rules


def design(rows: list[Prompt], vocabulary: dict[str, int]) -> sparse.csr_matrix:
    indptr, indices = [0], []
    for p in rows:
        indices += sorted(vocabulary[k] for k in feature_keys(p.text) if k in vocabulary)
        indptr.append(len(indices))
    return sparse.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(len(rows), len(vocabulary)))


def build_vocabulary(rows: list[Prompt], anchor: dict[str, list[float]] | None = None) -> dict[str, int]:
    documents = Counter(k for p in rows for k in feature_keys(p.text))
    keys = {k for k, n in documents.items() if n >= MIN_DOCUMENTS or k.startswith("!")} | set(anchor or ())
    return {k: i for i, k in enumerate(sorted(keys))}


def read_anchor(path: Path) -> dict[str, list[float]]:
    """A model file's weights by feature key (``feature_keys``' spelling: rules prefixed ``!``)."""
    try:
        model = json.loads(path.read_text(encoding="utf-8"))
        if model.get("task_types") != [t.value for t in TYPES]:
            raise ValueError(f"its task_types {model.get('task_types')} are not {[t.value for t in TYPES]}")
        weights = {**model["words"], **model["pairs"], **{"!" + k: v for k, v in model["rules"].items()}}
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"--anchor {path}: not a model file this script wrote ({e})")
    return weights


def anchor_matrix(vocabulary: dict[str, int], anchor: dict[str, list[float]] | None) -> np.ndarray:
    """The prior mean of the weights: the anchor's where it has the feature, zero elsewhere."""
    w0 = np.zeros((len(vocabulary), len(TYPES)))
    for key, row in (anchor or {}).items():
        w0[vocabulary[key]] = row
    return w0


def fit(x: sparse.csr_matrix, labels: np.ndarray, l2: float, w0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Weights (features x types) and biases minimising the class-balanced log loss plus an L2
    penalty on their distance from ``w0`` (zero unless anchored)."""
    n, d = x.shape
    k = len(TYPES)
    w0 = np.zeros((d, k)) if w0 is None else w0
    counts = np.bincount(labels, minlength=k)
    sample_weight = (n / (k * np.maximum(counts, 1)))[labels] / n
    onehot = np.zeros((n, k))
    onehot[np.arange(n), labels] = 1.0

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = theta[: d * k].reshape(d, k), theta[d * k:]
        logits = x @ w + b
        logits -= logits.max(axis=1, keepdims=True)
        log_p = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        value = -(sample_weight * (onehot * log_p).sum(axis=1)).sum() + 0.5 * l2 * ((w - w0) ** 2).sum()
        residual = (np.exp(log_p) - onehot) * sample_weight[:, None]
        grad_w = x.T @ residual + l2 * (w - w0)
        return value, np.concatenate([np.asarray(grad_w).ravel(), residual.sum(axis=0)])

    start = np.concatenate([w0.ravel(), np.zeros(k)])
    result = optimize.minimize(loss, start, jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    return result.x[: d * k].reshape(d, k), result.x[d * k:]


def balanced_accuracy(x, labels, w, b) -> float:
    predicted = np.asarray(x @ w + b).argmax(axis=1)
    recalls = [np.mean(predicted[labels == c] == c) for c in range(len(TYPES)) if np.any(labels == c)]
    return float(np.mean(recalls))


def choose_l2(rows: list[Prompt], anchor: dict[str, list[float]] | None = None) -> tuple[float, dict[float, float]]:
    """The L2 strength with the best mean balanced accuracy over folds of the train rows."""
    fold = np.array([zlib.crc32(p.text.encode("utf-8")) % FOLDS for p in rows])
    labels = np.array([TYPES.index(p.task_type) for p in rows])
    scores = {}
    for l2 in L2_GRID:
        per_fold = []
        for f in range(FOLDS):
            inside = [p for p, g in zip(rows, fold) if g != f]
            outside = [p for p, g in zip(rows, fold) if g == f]
            vocabulary = build_vocabulary(inside, anchor)
            w, b = fit(design(inside, vocabulary), labels[fold != f], l2, anchor_matrix(vocabulary, anchor))
            per_fold.append(balanced_accuracy(design(outside, vocabulary), labels[fold == f], w, b))
        scores[l2] = float(np.mean(per_fold))
        print(f"  l2 {l2:g}: cross-validated balanced accuracy {scores[l2]:.3f}", flush=True)
    return max(scores, key=scores.__getitem__), scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the shared data folder (default ../shared/data)")
    parser.add_argument("--texts", type=Path, help="the texts of the referenced prompts (see benchmarks/classifier_corpus.py)")
    parser.add_argument("--out", type=Path, default=MODEL_FILE, help=f"where to write the model (default {MODEL_FILE})")
    parser.add_argument("--anchor", type=Path, help="a model file to centre the L2 penalty on (see above)")
    args = parser.parse_args(argv)
    anchor = read_anchor(args.anchor) if args.anchor else None

    rows = train_rows(args.data, args.texts)
    print(f"{len(rows)} train prompts: " + ", ".join(f"{t.value} {n}" for t, n in Counter(p.task_type for p in rows).most_common()))
    l2, cv = choose_l2(rows, anchor)
    vocabulary = build_vocabulary(rows, anchor)
    labels = np.array([TYPES.index(p.task_type) for p in rows])
    w, b = fit(design(rows, vocabulary), labels, l2, anchor_matrix(vocabulary, anchor))
    # Softmax is unchanged by adding a constant to a feature's row: centring each row makes small
    # rows prunable whatever their offset.
    w = w - w.mean(axis=1, keepdims=True)
    kept = {kind: {} for kind in ("words", "pairs", "rules")}
    for key, i in vocabulary.items():
        if np.abs(w[i]).max() < PRUNE_BELOW:
            continue
        kind = "rules" if key.startswith("!") else "pairs" if " " in key else "words"
        kept[kind][key.removeprefix("!") if kind == "rules" else key] = [round(float(v), DIGITS) for v in w[i]]
    model = {
        "format": 1,
        "about": "routing_runtime's task classifier: multinomial logistic regression, written by scripts/train_classifier.py",
        "task_types": [t.value for t in TYPES],
        "bias": [round(float(v), DIGITS) for v in b - b.mean()],
        "l2": l2, "cross_validated_balanced_accuracy": {f"{k:g}": round(v, 4) for k, v in cv.items()},
        "trained_on": {t.value: n for t, n in sorted(Counter(p.task_type for p in rows).items())},
        **({"anchored_on": {"sha256": hashlib.sha256(args.anchor.read_bytes()).hexdigest(),
                            "trained_on": json.loads(args.anchor.read_text(encoding="utf-8")).get("trained_on")}}
           if args.anchor else {}),
        **kept,
    }
    args.out.write_text(json.dumps(model, ensure_ascii=False, separators=(",", ":"), sort_keys=False) + "\n", encoding="utf-8")
    print(f"l2 {l2:g}; {sum(len(v) for v in kept.values())} of {len(vocabulary)} features kept; "
          f"{args.out} {args.out.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
