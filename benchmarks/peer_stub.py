"""A local OpenAI-compatible chat-completions server for benchmarks/peer_openevolve.py: it
answers Groundwork and OpenEvolve with the same fixed programs, the circle_packing
catalog's strategies applied to the baseline pack.py, each in the asking system's own edit
format, so both systems evaluate the same candidates and no model's latency is measured.

- Groundwork's ideator (a prompt asking for `exactly N blocks`): N <idea> blocks, the next
  N strategies' titles and descriptions.
- Groundwork's implementer ("Implement this idea. Title: T"): SEARCH/REPLACE blocks for
  strategy T (run Groundwork with --edit-format search_replace).
- Anything else (OpenEvolve, in full-rewrite mode): the next strategy's whole program in a
  ```python block.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import tomllib

ENV_DIR = Path(__file__).resolve().parents[1] / "src/groundwork/environments/builtin/circle_packing"
_COUNT = re.compile(r"Answer with exactly (\d+) blocks")
_TITLE = re.compile(r"Implement this idea\.\s*Title: (.+)")


@dataclass(frozen=True)
class Strategy:
    id: str
    title: str
    description: str
    edits: tuple[tuple[str, str], ...]  # (find, replace) on pack.py
    program: str  # the baseline pack.py with the edits applied


def load_strategies(env_dir: Path = ENV_DIR) -> list[Strategy]:
    baseline = (env_dir / "baseline/pack.py").read_text()
    out = []
    for idea in tomllib.loads((env_dir / "catalog.toml").read_text())["idea"]:
        edits = tuple((e["find"].strip("\n"), e["replace"].strip("\n")) for e in idea["edit"] if "find" in e)
        program = baseline
        for find, replace in edits:
            if program.count(find) != 1:
                raise ValueError(f"strategy {idea['id']!r}: its edit does not match the baseline pack.py once")
            program = program.replace(find, replace)
        out.append(Strategy(idea["id"], idea["title"], idea["description"], edits, program))
    return out


def search_replace_answer(strategy: Strategy) -> str:
    return "\n".join(
        f"pack.py\n<<<<<<< SEARCH\n{find}\n=======\n{replace}\n>>>>>>> REPLACE\n" for find, replace in strategy.edits
    )


def ideas_answer(strategies: list[Strategy]) -> str:
    return "\n".join(
        f"<idea>\n<title>{s.title}</title>\n<category>other</category>\n"
        f"<description>{s.description}</description>\n<changes>pack.py</changes>\n</idea>"
        for s in strategies
    )


class StubModel:
    """What the server answers; thread-safe; counts every request by kind."""

    def __init__(self, strategies: list[Strategy]):
        self.strategies = strategies
        self.by_title = {s.title: s for s in strategies}
        self._ideas = itertools.cycle(strategies)
        self._programs = itertools.cycle(strategies)
        self._lock = threading.Lock()
        self.counts = {"ideator": 0, "implementer": 0, "program": 0}

    def answer(self, messages: list[dict]) -> str:
        prompt = "\n".join(str(m.get("content", "")) for m in messages)
        with self._lock:
            if match := _TITLE.search(prompt):
                self.counts["implementer"] += 1
                title = match.group(1).strip()
                if title not in self.by_title:
                    raise KeyError(f"no strategy titled {title!r}")
                return search_replace_answer(self.by_title[title])
            if match := _COUNT.search(prompt):
                self.counts["ideator"] += 1
                return ideas_answer([next(self._ideas) for _ in range(int(match.group(1)))])
            self.counts["program"] += 1
            return f"```python\n{next(self._programs).program}```\n"


class _Handler(BaseHTTPRequestHandler):
    model: StubModel

    def do_POST(self):  # noqa: N802 (the http.server API)
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if not self.path.rstrip("/").endswith("/chat/completions"):
            return self._send(404, {"error": {"message": f"no route {self.path}: POST /v1/chat/completions"}})
        try:
            text = self.model.answer(body.get("messages", []))
        except KeyError as exc:
            return self._send(400, {"error": {"message": str(exc)}})
        tokens = len(text) // 4
        self._send(200, {
            "id": "stub", "object": "chat.completion", "created": 0, "model": body.get("model", "stub"),
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
        })  # fmt: skip

    def _send(self, code: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):  # quiet: the benchmark prints its own progress
        pass


def start_server(model: StubModel, host: str = "127.0.0.1") -> tuple[ThreadingHTTPServer, str]:
    """Serve model on a free port in a daemon thread; returns the server and its /v1 base URL."""
    handler = type("Handler", (_Handler,), {"model": model})
    server = ThreadingHTTPServer((host, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://{host}:{server.server_address[1]}/v1"
