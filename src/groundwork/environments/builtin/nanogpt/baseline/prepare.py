"""Freeze the nanogpt environment's data: a byte-level corpus of CPython's standard library.

Locked file (hidden from ideators). Usage:

    python prepare.py --out DIR           # build DIR/train.bin, DIR/val.bin, DIR/manifest.json
    python prepare.py --out DIR --verify  # only check the shards against the manifest

The corpus is every ``*.py`` file in the running interpreter's stdlib folder
(``sysconfig.get_paths()["stdlib"]``), minus ``site-packages``/``dist-packages``, sorted
by relative POSIX path. Each file goes to validation when
``int(sha256(relpath).hexdigest()[:8], 16) % 20 == 0`` (about 5%), else to train, so the
split depends neither on file order nor on the machine. A shard is the concatenation of
each file's raw bytes followed by b"\\n".

The build happens in a temporary folder next to DIR that is renamed into place at the end,
so an interrupted run never leaves half-written shards behind. Running it again on a
prepared DIR whose hashes match is a no-op.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

CORPUS = "cpython-stdlib"
SHARDS = ("train.bin", "val.bin")
EXCLUDED_DIRS = {"site-packages", "dist-packages"}
VAL_MODULUS = 20
SPLIT_RULE = (
    "relative POSIX path p of every *.py under the stdlib folder, excluding "
    "site-packages/dist-packages, sorted by p; val if int(sha256(p).hexdigest()[:8], 16) % 20 == 0 "
    "else train; each file's bytes followed by b'\\n'"
)


def is_val(relpath: str) -> bool:
    return int(hashlib.sha256(relpath.encode("utf-8")).hexdigest()[:8], 16) % VAL_MODULUS == 0


def list_sources(root: Path) -> list[tuple[str, Path]]:
    """All *.py files under root as (relative POSIX path, absolute path), sorted by the former."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in EXCLUDED_DIRS and d != "__pycache__"]
        for name in filenames:
            if name.endswith(".py"):
                path = Path(dirpath) / name
                found.append((path.relative_to(root).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check(out: Path, shards: tuple[str, ...] = SHARDS) -> tuple[bool, str]:
    """(ok, message): do the shards in `out` exist and match the manifest's hashes?"""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False, f"no manifest at {manifest_path}"
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["sha256"]
    except (ValueError, KeyError) as exc:
        return False, f"unreadable manifest {manifest_path}: {exc}"
    for name in shards:
        path = out / name
        if not path.is_file():
            return False, f"missing shard {path}"
        actual = sha256_file(path)
        if actual != expected.get(name):
            return False, f"hash mismatch for {path}: manifest {expected.get(name)}, file {actual}"
    return True, f"{out}: shards match manifest ({manifest.get('files')}, {manifest.get('bytes')})"


def build(out: Path) -> dict:
    root = Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise SystemExit(f"prepare.py: stdlib folder not found: {root}")
    sources = list_sources(root)
    if not sources:
        raise SystemExit(f"prepare.py: no *.py files under {root}")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        counts = {"train": 0, "val": 0}
        with open(tmp / "train.bin", "wb") as ftrain, open(tmp / "val.bin", "wb") as fval:
            for rel, path in sources:
                split = "val" if is_val(rel) else "train"
                (fval if split == "val" else ftrain).write(path.read_bytes() + b"\n")
                counts[split] += 1
        manifest = {
            "corpus": CORPUS,
            "python_version": ".".join(map(str, sys.version_info[:3])),
            "stdlib_root": str(root),
            "split_rule": SPLIT_RULE,
            "files": counts,
            "bytes": {name: (tmp / name).stat().st_size for name in SHARDS},
            "sha256": {name: sha256_file(tmp / name) for name in SHARDS},
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        # Swap into place: only a complete folder ever carries the name `out`.
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for train.bin, val.bin, manifest.json")
    parser.add_argument("--verify", action="store_true", help="only check the shards' hashes")
    args = parser.parse_args(argv)
    out = args.out.resolve()

    t0 = time.time()
    ok, message = check(out)
    if args.verify:
        print(("verified: " if ok else "verify FAILED: ") + message, flush=True)
        return 0 if ok else 1
    if ok:
        print(f"already prepared: {message}", flush=True)
        return 0
    if out.exists():
        # The whole folder gets replaced, so never do that to one holding anything else.
        foreign = sorted(p.name for p in out.iterdir() if p.name not in (*SHARDS, "manifest.json"))
        if foreign:
            print(f"prepare.py: {out} holds other files ({', '.join(foreign[:5])}); refusing to replace it", file=sys.stderr)
            return 1
        if any(out.iterdir()):
            print(f"rebuilding {out} ({message})", flush=True)

    manifest = build(out)
    print(
        f"prepared {out} from {manifest['stdlib_root']} (Python {manifest['python_version']}): "
        f"train {manifest['files']['train']} files / {manifest['bytes']['train.bin']:,} bytes, "
        f"val {manifest['files']['val']} files / {manifest['bytes']['val.bin']:,} bytes "
        f"in {time.time() - t0:.1f}s",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
