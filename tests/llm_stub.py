"""A local stand-in for OpenAI-compatible and Anthropic HTTP APIs, for tests only: it
answers on 127.0.0.1 with scripted replies and records every request it gets."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = Callable[[dict[str, Any]], str]  # request body -> answer text


class StubServer:
    def __init__(self, reply: Reply, fail_first: int = 0, usage: dict[str, int] | None = None):
        self.reply = reply
        self.fail_first = fail_first
        self.usage = usage or {"input": 1000, "cached": 600, "output": 200, "reasoning": 50}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with stub._lock:
                    stub.requests.append((self.path, body))
                    failing = len(stub.requests) <= stub.fail_first
                if failing:
                    self._send(
                        429, {"error": {"type": "rate_limit_error", "message": "slow down"}}, {"retry-after-ms": "10"}
                    )
                    return
                text = stub.reply(body)
                if self.path.endswith("/chat/completions"):
                    self._send(200, stub._openai(body, text))
                elif self.path.endswith("/messages"):
                    self._send(200, stub._anthropic(body, text))
                else:
                    self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, code: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
                raw = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> StubServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _openai(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        u = self.usage
        return {
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "created": 0,
            "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}],
            "usage": {
                "prompt_tokens": u["input"],
                "completion_tokens": u["output"],
                "total_tokens": u["input"] + u["output"],
                "prompt_tokens_details": {"cached_tokens": u["cached"]},
                "completion_tokens_details": {"reasoning_tokens": u["reasoning"]},
            },
        }

    def _anthropic(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        u = self.usage
        content = [{"type": "text", "text": text}]
        if body.get("thinking"):
            content.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "sig"})
        return {
            "id": "msg_stub",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": u["input"] - u["cached"],
                "output_tokens": u["output"],
                "cache_read_input_tokens": u["cached"],
                "cache_creation_input_tokens": 0,
            },
        }


def last_user_text(body: dict[str, Any]) -> str:
    content = body["messages"][-1]["content"]
    return content if isinstance(content, str) else "".join(b.get("text", "") for b in content)
