"""OpenEvolve's evaluation file for the circle_packing task: runs the candidate pack.py in
a fresh process exactly as Groundwork's job does (same interpreter, environment variables
and time limit) and scores its packing.json with the environment's own locked validator.
Each call appends its own duration to $PEER_EVAL_LOG, so the harness can subtract it."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ENV_DIR = Path(__file__).resolve().parents[1] / "src/groundwork/environments/builtin/circle_packing"
_spec = importlib.util.spec_from_file_location("cp_locked_evaluate", ENV_DIR / "baseline/evaluate.py")
_locked = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_locked)


def evaluate(program_path):
    started = time.time()
    n, container = int(os.environ.get("GROUNDWORK_CIRCLES", "26")), os.environ.get("GROUNDWORK_CONTAINER", "square")
    with tempfile.TemporaryDirectory() as work:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the candidate sees no OpenEvolve deps
        env.update(GROUNDWORK_OUT_DIR=work, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
        try:
            limit = float(os.environ.get("PEER_TIME_LIMIT_S", "60"))
            cmd = [os.environ.get("PEER_PYTHON", sys.executable), os.path.abspath(program_path)]
            proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=limit)
            packing = json.loads((Path(work) / "packing.json").read_text()) if proc.returncode == 0 else None
            result = _locked.validate(packing, n, container) if packing is not None else None
        except Exception:  # a refused packing, a crashed or overrunning candidate: it scores nothing
            result = None
    score = float(result["sum_radii"]) if result else 0.0
    if os.environ.get("PEER_EVAL_LOG"):
        with open(os.environ["PEER_EVAL_LOG"], "a") as f:
            f.write(json.dumps({"start": started, "end": time.time(), "sum_radii": score}) + "\n")
    return {"combined_score": score, "sum_radii": score, "validity": 1.0 if result else 0.0}
