"""`make run` (until `routing demo` lands): a short scripted agent session against a fresh home.

Initialises ./.routing-demo from the shipped registry, routes a few prompts under every
preference, records an outcome for each (a seeded coin, clearly synthetic), and prints the
decisions and the balanced rules.
"""

from __future__ import annotations

import random
import shutil
from collections import Counter
from pathlib import Path

from routing_runtime import ModelRouter, RoutingPreference
from routing_runtime.admin import initialise
from routing_runtime.cli import main as routing

HOME = Path(".routing-demo")
PROMPTS = [
    "Write a Python function that merges overlapping intervals.",
    "Please review this diff:\ndiff --git a/app.py b/app.py\n@@ -1,3 +1,4 @@\n+import os",
    "Traceback (most recent call last):\n  File \"app.py\", line 3\nKeyError: 'user_id'",
    "Break the billing migration into milestones for next quarter.",
    "Write a README section explaining how to configure the router.",
    "Write pytest unit tests for parse_duration().",
    "A train travels 120 km in 1.5 hours. What is its average speed in km per hour?",
    "What is the difference between a process and a thread?",
]


def main() -> None:
    shutil.rmtree(HOME, ignore_errors=True)
    result = initialise(HOME)
    print(f"initialised {result.home} with {result.models} models, rule set v{result.rule_set_version}\n")
    rng = random.Random(7)
    chosen: Counter[tuple[str, str]] = Counter()
    with ModelRouter.open(HOME, seed=7) as router:
        for prompt in PROMPTS:
            for preference in RoutingPreference:
                d = router.select_model(prompt, preference)
                chosen[(d.task_type.value, d.model_id)] += 1
                outcome = rng.choices(["success", "partial", "failure"], [0.7, 0.2, 0.1])[0]
                router.record_performance(d.decision_id, outcome, latency_ms=rng.randint(400, 3000), tokens_used=rng.randint(300, 2500))
        print(f"{'task type':<16} {'model':<28} decisions")
        for (task, model), n in sorted(chosen.items()):
            print(f"{task:<16} {model:<28} {n}")
    print()
    routing(["rules", "--home", str(HOME), "--preference", "balanced"])


if __name__ == "__main__":
    main()
