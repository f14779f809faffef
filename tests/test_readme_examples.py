"""README.md's "With LiteLLM" and "With the OpenAI SDK" examples, run as written: in a fresh
interpreter, against a local OpenAI-compatible server (stdlib HTTP, on loopback), with
``OPENAI_BASE_URL`` pointing at it, the way a team points them at a gateway."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from conftest import db_connect

README = Path(__file__).resolve().parents[1] / "README.md"


def example(heading: str) -> str:
    """The first ```python block under README.md's ``heading``."""
    text = README.read_text(encoding="utf-8")
    section = text.split(f"\n### {heading}\n", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


class _OpenAICompatible(BaseHTTPRequestHandler):
    """Chat Completions, as an OpenAI-compatible server answers them; remembers the models asked."""

    asked: list[str] = []

    def do_POST(self):  # http.server calls do_<METHOD>
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.asked.append(body["model"])
        answer = json.dumps({
            "id": "chatcmpl-readme", "object": "chat.completion", "created": 1_780_000_000, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": "user_id is missing from the payload."}}],
            "usage": {"prompt_tokens": 42, "completion_tokens": 11, "total_tokens": 53},
        }).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args):
        pass


@pytest.fixture
def provider():
    _OpenAICompatible.asked = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _OpenAICompatible)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", _OpenAICompatible.asked
    server.shutdown()
    server.server_close()


def run(code: str, home: Path, base_url: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ, "ROUTING_HOME": str(home), "OPENAI_API_KEY": "sk-readme", "OPENAI_BASE_URL": base_url,
        "OPENAI_API_BASE": base_url, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NO_PROXY": "127.0.0.1",
    }
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def recorded(home: Path):
    conn = db_connect(home)
    try:
        return conn.execute(
            "SELECT d.selected_model, d.agent_execution_id, d.preference, p.outcome, p.tokens_used, p.cost_usd, p.latency_ms"
            " FROM routing_decisions d JOIN model_performance p ON p.decision_id = d.id").fetchall()
    finally:
        conn.close()


def test_the_litellm_example_routes_and_records(home, provider, tmp_path):
    pytest.importorskip("litellm")
    base_url, asked = provider
    proc = run(example("With LiteLLM"), home, base_url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = recorded(home)
    assert proc.stdout.split()[0] == row["selected_model"] and asked == [row["selected_model"]]
    assert (row["agent_execution_id"], row["preference"], row["outcome"], row["tokens_used"]) == ("run-42", "quality", "success", 53)
    assert row["cost_usd"] > 0 and row["latency_ms"] > 0


def test_the_openai_sdk_example_records_tokens_and_list_price(home, provider, tmp_path):
    pytest.importorskip("openai")
    base_url, asked = provider
    proc = run(example("With the OpenAI SDK"), home, base_url, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [row] = recorded(home)
    assert asked == [row["selected_model"]]
    assert (row["outcome"], row["tokens_used"]) == ("success", 53) and row["cost_usd"] > 0
