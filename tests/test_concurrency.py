"""Several processes routing and recording on one ROUTING_HOME at the same time."""

from __future__ import annotations

import subprocess
import sys

from conftest import db_connect

N_PER_PROCESS = 300

WORKER = r"""
import sys
from routing_runtime import ModelRouter

home, tag, n, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tasks = ["code_generation", "code_review", "debugging", "planning", "documentation", "testing", "math", "general"]
preferences = ["quality", "cost_efficient", "balanced", "latency"]
outcomes = ["success", "partial", "failure"]
with ModelRouter.open(home, seed=seed) as router:
    print("ready", flush=True)
    sys.stdin.readline()          # start line: both processes begin together
    for i in range(n):
        d = router.select_model(tasks[i % 8], preferences[i % 4], f"{tag}-{i}")
        router.record_performance(d.decision_id, outcomes[i % 3], quality_score=(i % 11) / 10,
                                  latency_ms=100 + i, tokens_used=500 + i, cost_usd=0.0001 * (i % 7))
print("done", tag, n)
"""


def test_two_processes_select_and_record_concurrently(home):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(home), tag, str(N_PER_PROCESS), str(seed)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=home.parent,
        )
        for tag, seed in (("proc-a", 1), ("proc-b", 2))
    ]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:  # start both at once
            p.stdin.write("go\n")
            p.stdin.flush()
            p.stdin.close()
        # Outputs are a few lines, far below a pipe's buffer: waiting before reading cannot block.
        for p in procs:
            p.wait(timeout=120)
        results = [(p.stdout.read(), p.stderr.read()) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
        assert err.strip() == "", err
        assert out.strip().startswith("done")

    conn = db_connect(home)
    try:
        assert conn.execute("SELECT COUNT(*) FROM routing_decisions").fetchone()[0] == 2 * N_PER_PROCESS
        assert conn.execute("SELECT COUNT(*) FROM model_performance").fetchone()[0] == 2 * N_PER_PROCESS
        for tag in ("proc-a", "proc-b"):
            ids = {r[0] for r in conn.execute(
                "SELECT agent_execution_id FROM routing_decisions WHERE agent_execution_id LIKE ?", (f"{tag}-%",))}
            assert ids == {f"{tag}-{i}" for i in range(N_PER_PROCESS)}
        # Every outcome points at a recorded decision with the same model and task type.
        orphans = conn.execute(
            "SELECT COUNT(*) FROM model_performance p LEFT JOIN routing_decisions d ON d.id = p.decision_id"
            " WHERE d.id IS NULL OR d.selected_model != p.model_id OR d.task_type != p.task_type").fetchone()[0]
        assert orphans == 0
        assert conn.execute(
            "SELECT COUNT(DISTINCT decision_id) FROM model_performance").fetchone()[0] == 2 * N_PER_PROCESS
        # The two runs overlapped in time (otherwise this test would prove little).
        spans = [conn.execute(
            "SELECT MIN(created_at), MAX(created_at) FROM routing_decisions WHERE agent_execution_id LIKE ?",
            (f"{tag}-%",)).fetchone() for tag in ("proc-a", "proc-b")]
        assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1], spans
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
