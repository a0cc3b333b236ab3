"""Bring your own repository, end to end through the CLI: a flag-driven single-file
char-level trainer with its data in the root, an extra third-party import (shipped as a
local wheel, listed in requirements.txt) and no evaluation becomes a runnable environment
with `env init` + `env check --run`, offline and with no code written by hand: the
environment's own interpreter installs the wheel and inherits torch from Groundwork's.
Without a model the drafted evaluation asks for `score()`; with one (a recorded answer
replayed through `--llm replay:FILE`) init validates its draft by running the baseline."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess

import pytest

from conftest import GROUNDWORK, REPO, cli_env
from groundwork.environments import load_environment
from groundwork.environments.interpreters import LOCK_NAME
from wheels import write_wheel

TRAINER = '''"""A character-level bigram language model, trained from the command line."""
import argparse
import os

import torch
from tinyboard import SummaryWriter


class Bigram(torch.nn.Module):
    def __init__(self, vocab_size):
        super().__init__()
        self.table = torch.nn.Embedding(vocab_size, vocab_size)

    def forward(self, idx):
        return self.table(idx)


def encode(text, chars):
    index = {c: i for i, c in enumerate(chars)}
    return torch.tensor([index[c] for c in text if c in index], dtype=torch.long)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--input", default="input.txt")
    p.add_argument("--max-steps", type=int, default=5000)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cuda")
    p.add_argument("--out-dir", default="out")
    p.add_argument("--lr", type=float, default=0.5)
    a = p.parse_args()
    torch.manual_seed(a.seed)
    text = open(a.input).read()
    chars = sorted(set(text))
    data = encode(text, chars).to(a.device)
    model = Bigram(len(chars)).to(a.device)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr)
    writer = SummaryWriter(a.out_dir)
    os.makedirs(a.out_dir, exist_ok=True)
    for step in range(1, a.max_steps + 1):
        ix = torch.randint(len(data) - 1, (64,))
        loss = torch.nn.functional.cross_entropy(model(data[ix]), data[ix + 1])
        opt.zero_grad()
        loss.backward()
        opt.step()
        writer.add_scalar("loss", loss.item(), step)
        if step % 500 == 0 or step == a.max_steps:
            ckpt = {"model": model.state_dict(), "chars": chars, "step": step}
            torch.save(ckpt, os.path.join(a.out_dir, "ckpt.pt"))
    print(f"step {a.max_steps} loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
'''
# The third-party logger the trainer imports (TensorBoard's shape), shipped as a wheel.
TINYBOARD = """class SummaryWriter:
    def __init__(self, log_dir=None):
        self.log_dir = log_dir

    def add_scalar(self, tag, value, step):
        pass
"""
# What the scripted model writes in place of the template's loading and scoring.
MODEL_SCORE = '''def load_checkpoint():
    return torch.load(CHECKPOINT, map_location="cpu", weights_only=True)


def score(train, ckpt, held_out_path):
    """Mean next-character cross-entropy of the trained bigram on the held-out text."""
    model = train.Bigram(len(ckpt["chars"]))
    model.load_state_dict(ckpt["model"])
    model.eval()
    data = train.encode(open(held_out_path).read(), ckpt["chars"])
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(model(data[:-1]), data[1:]).item()


'''


def _scripted_answer(template: str) -> str:
    """The model's draft of groundwork_eval.py: the template with score() written (and the
    loader keeping the vocabulary the checkpoint holds)."""
    drafted = re.sub(r"def load_checkpoint\(\):.*?(?=def main\(\):)", lambda _: MODEL_SCORE, template, flags=re.S)
    assert drafted != template
    return f"=== FILE: groundwork_eval.py ===\n{drafted}=== END ===\n"


def _recording(path, answer: str) -> None:
    """A one-call recording `--llm replay:FILE` serves: the scripted model, offline."""
    usage = {"input_tokens": 100, "cached_input_tokens": 0, "cache_write_tokens": 0, "output_tokens": 50,
             "thinking_tokens": 0}  # fmt: skip
    row = {"role": "implementer", "call_key": "env-init:draft:first", "fingerprint": "-", "model": "scripted",
           "provider": "scripted", "epoch": None, "text": answer, "thinking": "", "usage": json.dumps(usage),
           "cost_usd": 0.0}  # fmt: skip
    path.write_text(json.dumps(row) + "\n")


def _repository(tmp_path):
    repo = tmp_path / "charmodel"
    repo.mkdir()
    (repo / "charmodel.py").write_text(TRAINER)
    (repo / "requirements.txt").write_text("torch\ntinyboard\n")  # torch: already Groundwork's
    write_wheel(repo / "wheels", "tinyboard", "0.1", TINYBOARD)  # what an offline user downloaded
    words = "the quick brown fox jumps over a lazy dog and the cat sat on the mat".split()
    rng = random.Random(0)
    (repo / "input.txt").write_text("".join(" ".join(rng.choices(words, k=8)) + "\n" for _ in range(400)))
    return repo


def _groundwork(*args, env, timeout=120):
    proc = subprocess.run([*GROUNDWORK, *args], capture_output=True, text=True, env=env, timeout=timeout)
    return proc.returncode, " ".join((proc.stdout + proc.stderr).split())


@pytest.mark.slow  # init and check run a real third-party trainer several times
def test_a_third_party_trainer_becomes_runnable_with_init_and_check(tmp_path):
    repo = _repository(tmp_path)
    cache = tmp_path / "cache"
    env = cli_env({"PYTHONPATH": str(REPO / "src"), "GROUNDWORK_CACHE": str(cache)})
    offline = ["--find-links", str(repo / "wheels"), "--no-index"]

    # The extra import, when this interpreter cannot import it and nothing names it, is a problem.
    bare = tmp_path / "bare" / "charmodel"
    bare.parent.mkdir()
    bare.mkdir()
    (bare / "charmodel.py").write_text(TRAINER)
    (bare / "input.txt").write_text((repo / "input.txt").read_text())
    rc, out = _groundwork("env", "init", str(bare), "--no-ask", env=env)
    assert rc == 1 and "charmodel.py imports tinyboard" in out and "--requirements" in out, out
    assert not (bare / "environment.toml").exists()

    # No model: everything is inferred; the drafted evaluation leaves score() to write, and says so.
    rc, out = _groundwork("env", "init", str(repo), "--no-ask", "--max-steps", "300", "--budget", "30", *offline,
                          env=env)  # fmt: skip
    assert rc == 0, out
    for evidence in ("training script: charmodel.py", "flag for seed: --seed", "data file: input.txt",
                     "checkpoint: torch.save of a state dict under 'model' to ckpt.pt",
                     "imports not installed: tinyboard", "write score() in groundwork_eval.py"):  # fmt: skip
        assert evidence in out, out
    assert "requirements: requirements.txt go to [dependencies]" in out and "the wheels in wheels" in out, out
    assert "layered on the packages of the interpreter running Groundwork" in out, out
    manifest = load_environment(repo).manifest
    assert manifest.run.train == ["{python}", "charmodel.py", "--input", "{data_dir}/train.txt", "--seed", "{seed}",
                                  "--out-dir", "{output_dir}", "--max-steps", "300", "--device", "cpu"]  # fmt: skip
    assert manifest.run.pass_env == [] and manifest.data.training_files == ["train.txt"]
    assert "input.txt" in manifest.files.hidden and "input.txt" in manifest.files.locked
    deps = manifest.dependencies
    assert (deps.requirements_file, deps.find_links, deps.no_index, deps.inherit_packages) == (
        "requirements.txt", ["wheels"], True, True)  # fmt: skip
    assert "install them into the interpreter" not in (repo / "environment.toml").read_text()
    rc, out = _groundwork("env", "check", str(repo), "--run", env=env)
    assert rc == 1 and "ok train" in out and "write score()" in out, out

    # A model drafts score(): shown as a diff, accepted, validated by a baseline run inside init.
    template = (repo / "groundwork_eval.py").read_text()
    _recording(tmp_path / "model.jsonl", _scripted_answer(template))
    rc, out = _groundwork("env", "init", str(repo), "--no-ask", "--max-steps", "300", "--budget", "30", "--force",
                          "--yes", "--llm", f"replay:{tmp_path / 'model.jsonl'}", *offline, env=env)  # fmt: skip
    assert rc == 0, out
    assert "+def score(train, ckpt, held_out_path):" in out and "validated: the baseline ran and scored val_loss" in out
    assert "NotImplementedError" not in (repo / "groundwork_eval.py").read_text()

    rc, out = _groundwork("env", "check", str(repo), "--run", env=env)
    assert rc == 0, out
    assert "ok prepare" in out and "training sees 1 of them" in out and "is ready" in out
    assert re.search(r"ok interpreter \(\S+ s\): \S+/bin/python \(pip, \d+ locked; Groundwork's own packages", out), out
    # The job imported tinyboard from the environment's own interpreter, built from the wheel
    # in this test's cache, with torch inherited from Groundwork's interpreter (not installed).
    (built,) = [p for p in (cache / "interpreters").iterdir() if (p / LOCK_NAME).is_file()]
    lock = (built / LOCK_NAME).read_text()
    assert "tinyboard==0.1" in lock and "torch==" in lock, lock
    installed = {p.name.split("-")[0] for p in built.glob("lib/python*/site-packages/*.dist-info")}
    assert installed == {"tinyboard"}, installed
    value = float(re.search(r"val_loss = ([0-9.]+)", out).group(1))
    # Trained: well below a uniform guess over the characters (ln of the vocabulary size).
    vocab = len(set((repo / "input.txt").read_text()))
    assert 0.0 < value < 0.8 * math.log(vocab), out
