"""Build the classifier's corpus files from collected, labelled prompts.

    python scripts/build_classifier_corpus.py COLLECTED.jsonl [...] [--texts-out PATH]
    python scripts/build_classifier_corpus.py --append NEW.jsonl [...]

Each input row: ``text``, ``task_type``, ``source`` (address), ``origin``, ``licence``. Rows are
de-duplicated by text (case and white space folded), given a fixed split (half held out, by a hash
of the text), and written to ``benchmarks/data/classifier/``: ``prompts.jsonl`` with the text where
the licence lets us redistribute it, ``references.jsonl`` without it (address, label, split and the
text's SHA-256) for the others. Non-commercial licences are dropped: the classifier ships in an
Apache-2.0 package. ``--texts-out`` writes every kept row with its text (a local file, never
committed) for ``scripts/train_classifier.py --texts`` and ``benchmarks/bench_classifier.py --texts``.
``--append`` keeps every row the corpus files already hold (their splits unchanged) and adds the new
inputs' rows after them, skipping any whose text (or, for a referenced row, digest) is already there.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from classifier_corpus import COLLECTED, REFERENCES, SHIPPED_LICENCES, digest, hashed_split, jsonl_rows  # noqa: E402

from routing_runtime import TaskType  # noqa: E402

HELD_OUT_SHARE = 0.4


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path)
    parser.add_argument("--texts-out", type=Path, help="also write every kept row with its text here (not committed)")
    parser.add_argument("--append", action="store_true", help="keep the corpus files' rows and add the inputs' new ones")
    args = parser.parse_args(argv)
    seen: set[str] = set()
    shipped, referenced, texts, dropped = [], [], [], Counter()
    known_digests: set[str] = set()
    if args.append:
        shipped, referenced = jsonl_rows(COLLECTED), jsonl_rows(REFERENCES)
        seen = {" ".join(r["text"].lower().split()) for r in shipped}
        known_digests = {r["sha256"] for r in referenced} | {digest(r["text"]) for r in shipped}
    for path in args.inputs:
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            TaskType(row["task_type"])  # a bad label fails here, naming the value
            licence = row.get("licence") or "unknown"
            if "NC" in licence.split("-"):
                dropped["non-commercial licence"] += 1
                continue
            key = " ".join(row["text"].lower().split())
            if key in seen or digest(row["text"]) in known_digests:
                dropped["duplicate"] += 1
                continue
            seen.add(key)
            split = hashed_split(row["text"], 1 - HELD_OUT_SHARE)
            meta = {"task_type": row["task_type"], "split": split, "origin": row["origin"], "source": row["source"], "licence": licence}
            texts.append({"text": row["text"], **meta})
            if licence in SHIPPED_LICENCES:
                shipped.append({"text": row["text"], **meta})
            else:
                referenced.append({**meta, "sha256": digest(row["text"]), "chars": len(row["text"])})
    for path, rows in ((COLLECTED, shipped), (REFERENCES, referenced)):
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    if args.texts_out:
        args.texts_out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in texts), encoding="utf-8")
    print(f"{len(shipped)} shipped with text, {len(referenced)} referenced; dropped {dict(dropped)}")
    for name, rows in (("added" if args.append else "all", texts), ("held out", [r for r in texts if r["split"] == "held_out"])):
        print(f"  {name}: " + ", ".join(f"{t} {n}" for t, n in Counter(r["task_type"] for r in rows).most_common()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
