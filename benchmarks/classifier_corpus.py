"""The classifier's labelled prompts, with their split: what it is trained on and what it is judged on.

One place for both sides, so that the training script (``scripts/train_classifier.py``) and the
benchmark (``benchmarks/bench_classifier.py``) can never disagree about which prompt is held out.

Sources, every prompt written by somebody else except the last:

* ``benchmarks/data/classifier/``: real public prompts of all eight task types, labelled by us, each
  with its source address, licence and fixed ``split`` (a hash of the text, drawn once by
  ``scripts/build_classifier_corpus.py``). ``prompts.jsonl`` holds the text of those whose licence
  lets us redistribute it (MIT, Apache-2.0, CC0, CC-BY-4.0: MBPP, HumanEval, MATH, self-instruct,
  awesome-chatgpt-prompts, and Arena-Hard-Auto v0.1's 500 prompts that Chatbot Arena's users
  wrote: the nearest thing here to what an agent's users send). ``references.jsonl`` lists the
  others (GitHub issues and pull requests, Stack Exchange and forum questions, Dolly) by address,
  label, split and the SHA-256 of the text, without the text: they count only where a local copy
  of their texts is passed (``texts=``), and a copy whose text does not match the digest is refused.
* ``../shared/data/outcomes/routellm`` (Apache-2.0): GSM8K (``math``), MMLU (the mathematics
  subjects ``math``, every other subject ``general``) and the first turns of MT-Bench (coding
  ``code_generation``, math ``math``, the rest ``general``). Split by a hash of the text: 40% train.
* ``tests/data/labelled_prompts.jsonl``: prompts we wrote in the style of agent requests. Train only.

How the prompts were labelled where two task types could fit: ``benchmarks/data/classifier/README.md``.

The held-out rows are never used to fit or to choose anything: the training script chooses its
regularisation by cross-validation on the train rows alone.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

from routing_runtime import TaskType

ROOT = Path(__file__).resolve().parent.parent
CORPUS = ROOT / "benchmarks" / "data" / "classifier"
COLLECTED = CORPUS / "prompts.jsonl"
REFERENCES = CORPUS / "references.jsonl"
#: Licences under which a prompt's text is shipped in ``prompts.jsonl``; any other is referenced only.
SHIPPED_LICENCES = frozenset(("MIT", "Apache-2.0", "CC0-1.0", "CC-BY-4.0"))
OWN = ROOT / "tests" / "data" / "labelled_prompts.jsonl"
DEFAULT_DATA = ROOT.parent / "shared" / "data"

MATH_SUBJECTS = frozenset((
    "abstract_algebra", "college_mathematics", "elementary_mathematics", "high_school_mathematics", "high_school_statistics",
))
#: MT-Bench's categories by question id block (81-90 writing, ..., 151-160 humanities).
MT_BENCH_BLOCKS = ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
MT_BENCH_LABELS = {"coding": TaskType.CODE_GENERATION, "math": TaskType.MATH}
#: Share of the shared-data prompts that is trained on (by a hash of the text).
SHARED_TRAIN_SHARE = 0.4

csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Prompt:
    text: str
    task_type: TaskType
    origin: str          # "github-issue", "stackoverflow", "dataset:gsm8k", "own", ...
    split: str           # "train" or "held_out"
    group: str = ""      # what a per-group sample is drawn within (an MMLU subject)


def hashed_split(text: str, train_share: float) -> str:
    """``"train"`` or ``"held_out"``, the same on every machine for the same text.

    >>> hashed_split("Janet's ducks lay 16 eggs per day.", 0.4) in ("train", "held_out")
    True
    """
    return "train" if zlib.crc32(text.encode("utf-8")) % 1000 < train_share * 1000 else "held_out"


def digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def jsonl_rows(path: Path) -> list[dict]:
    """The rows of a JSON-lines file, blank lines skipped."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def collected(texts: Path | None = None) -> list[Prompt]:
    """The real prompts of all eight task types: the shipped ones, and the referenced ones whose
    text the JSONL file ``texts`` holds (rows with ``text``; matched to a reference by digest)."""
    out = [Prompt(r["text"], TaskType(r["task_type"]), r["origin"], r["split"]) for r in jsonl_rows(COLLECTED)]
    if texts is None:
        return out
    by_digest = {digest(r["text"]): r["text"] for r in jsonl_rows(texts)}
    references = jsonl_rows(REFERENCES)
    missing = [r["source"] for r in references if r["sha256"] not in by_digest]
    if len(missing) == len(references):
        raise ValueError(f"texts={texts}: none of its texts matches a digest in {REFERENCES.name}: is it the right file?")
    return out + [Prompt(by_digest[r["sha256"]], TaskType(r["task_type"]), r["origin"], r["split"])
                  for r in references if r["sha256"] in by_digest]


def reference_count() -> int:
    """How many prompts are referenced without their text."""
    return len(jsonl_rows(REFERENCES))


def own(path: Path = OWN) -> list[Prompt]:
    """The prompts we wrote (train only)."""
    return [Prompt(r["text"], TaskType(r["task_type"]), "own", "train") for r in jsonl_rows(path)]


def shared(data: Path = DEFAULT_DATA) -> list[Prompt]:
    """GSM8K, MMLU and MT-Bench prompts from the shared data; [] when it is absent."""
    folder = data / "outcomes" / "routellm"
    if not folder.is_dir():
        return []
    out = []
    with (folder / "routellm_evals_gsm8k_gsm8k_responses.csv").open(encoding="utf-8", newline="") as f:
        out += [_shared(row["prompt"], TaskType.MATH, "dataset:gsm8k") for row in csv.DictReader(f)]
    for path in sorted((folder / "mmlu_responses").glob("mmlu_*.csv")):
        subject = path.stem.removeprefix("mmlu_")
        label = TaskType.MATH if subject in MATH_SUBJECTS else TaskType.GENERAL
        with path.open(encoding="utf-8", newline="") as f:
            out += [_shared(row["prompt"], label, "dataset:mmlu", subject) for row in csv.DictReader(f)]
    first_turns: dict[int, str] = {}
    with (folder / "routellm_evals_mt_bench_judgements.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            turn = re.search(r"### User:\n(.*?)\n\n### Assistant A:", row["user_prompt"], re.S)
            if turn and row["question_id"] not in first_turns:
                first_turns[row["question_id"]] = turn.group(1).strip()
    for qid, text in sorted(first_turns.items()):
        category = MT_BENCH_BLOCKS[(qid - 81) // 10]
        out.append(_shared(text, MT_BENCH_LABELS.get(category, TaskType.GENERAL), "dataset:mt-bench", category))
    return out


def _shared(text: str, label: TaskType, origin: str, group: str = "") -> Prompt:
    return Prompt(text, label, origin, hashed_split(text, SHARED_TRAIN_SHARE), group)
