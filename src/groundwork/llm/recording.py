"""Every model call goes through the run store: recorded with its usage and cost, served
from the store when the same logical call was already answered (a resumed run never pays
twice), stopped by the dollar cap, and replayable later with no network."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from groundwork.llm.base import LLM, LLMError, LLMRequest, LLMResponse, Usage
from groundwork.llm.pricing import PriceTable
from groundwork.store import RunStore

RECORDINGS_DIR = Path(__file__).with_name("recordings")


class BudgetExceeded(RuntimeError):
    """The run's dollar cap is reached; the run stops cleanly and can be resumed with a higher cap."""


def _response_from_row(row: dict[str, Any], replayed: bool) -> LLMResponse:
    return LLMResponse(
        text=row["text"],
        thinking=row["thinking"] or "",
        model=row["model"],
        provider=row["provider"],
        usage=Usage(**json.loads(row["usage"])),
        cost_usd=row["cost_usd"],
        latency_s=0.0,
        replayed=replayed,
    )


class RecordingLLM:
    def __init__(
        self, inner: LLM, run_dir: Path, prices: PriceTable, max_dollars: float | None = None, max_concurrency: int = 8
    ):
        self.inner = inner
        self.model = inner.model
        self.provider = inner.provider
        self.run_dir = Path(run_dir)
        self.prices = prices
        self.max_dollars = max_dollars
        self._local = threading.local()  # one store connection per thread
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._spend_lock = threading.Lock()

    def _store(self) -> RunStore:
        if not hasattr(self._local, "store"):
            self._local.store = RunStore(self.run_dir)
        return self._local.store

    def complete(self, request: LLMRequest) -> LLMResponse:
        store = self._store()
        fingerprint = request.fingerprint(self.model)
        previous = store.find_llm_call(fingerprint)
        if previous is not None:  # answered before this run was interrupted: reuse, pay nothing
            return _response_from_row(previous, replayed=bool(previous["replayed"]))
        with self._spend_lock:
            spent = store.llm_spent_usd()
            if self.max_dollars is not None and spent >= self.max_dollars:
                raise BudgetExceeded(f"LLM spend ${spent:.2f} reached the cap of ${self.max_dollars:.2f}")
        with self._slots:
            response = self.inner.complete(request)
        cost = (
            response.cost_usd if response.replayed else self.prices.cost(response.model or self.model, response.usage)
        )
        store.record_llm_call(
            {
                "ts": time.time(),
                "role": request.role,
                "call_key": request.call_key,
                "fingerprint": fingerprint,
                "model": response.model or self.model,
                "provider": response.provider,
                "epoch": request.metadata.get("epoch"),
                "idea_id": request.metadata.get("idea_id"),
                "request": json.dumps(asdict(request)),
                "text": response.text,
                "thinking": response.thinking,
                "usage": json.dumps(asdict(response.usage)),
                "cost_usd": cost,
                "latency_s": response.latency_s,
                "replayed": int(response.replayed),
            }
        )
        return LLMResponse(**{**asdict(response), "usage": response.usage, "cost_usd": cost})


def load_recording(source: str) -> list[dict[str, Any]]:
    """Recorded calls from a run folder, a .jsonl export, or a built-in recording's name."""
    path = Path(source)
    builtin = RECORDINGS_DIR / f"{source}.jsonl"
    if path.is_dir() and (path / "store.sqlite").is_file():
        store = RunStore(path)
        try:
            return store.llm_calls()
        finally:
            store.close()
    if path.is_file() or builtin.is_file():
        lines = (path if path.is_file() else builtin).read_text().splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    names = sorted(p.stem for p in RECORDINGS_DIR.glob("*.jsonl"))
    raise ValueError(
        f"replay source {source!r} is not a run folder, a .jsonl file, or a built-in recording "
        f"({', '.join(names) or 'none'})"
    )


def export_recording(run_dir: Path, out: Path) -> int:
    store = RunStore(run_dir)
    calls = store.llm_calls()
    out.write_text("".join(json.dumps({k: v for k, v in c.items() if k != "id"}) + "\n" for c in calls))
    return len(calls)


class ReplayLLM:
    """Answers from a recording: by exact request, else by the same logical call (the
    prompt template or the metrics in it changed), else the next unused answer of the same
    role and epoch. Never touches the network."""

    provider = "replay"

    def __init__(self, calls: list[dict[str, Any]], role: str, source: str):
        self.calls = [c for c in calls if c["role"] == role]
        if not self.calls:
            raise ValueError(f"the recording {source!r} has no {role} calls")
        self.model = self.calls[0]["model"]
        self.source = source
        self.role = role
        self._used: set[int] = set()
        self._lock = threading.Lock()

    def _take(self, request: LLMRequest) -> dict[str, Any] | None:
        fingerprint = request.fingerprint(self.model)
        epoch = request.metadata.get("epoch")
        rules = (
            lambda c: c["fingerprint"] == fingerprint,
            lambda c: c["call_key"] == request.call_key,
            lambda c: c.get("epoch") == epoch and c["call_key"].split(":")[0] == request.call_key.split(":")[0],
        )
        for rule in rules:
            for index, call in enumerate(self.calls):
                if index not in self._used and rule(call):
                    self._used.add(index)
                    return call
        return None

    def complete(self, request: LLMRequest) -> LLMResponse:
        with self._lock:
            call = self._take(request)
        if call is None:
            raise LLMError(
                f"replay of {self.source!r} has no {self.role} answer left for {request.call_key}: "
                "replay with the recorded run's settings (epochs, ideas per epoch)"
            )
        return _response_from_row(call, replayed=True)
