"""Locked evaluation for the circle_packing environment (hidden from ideators; never edited).

Run after pack.py, in the same folder:  python evaluate.py

It reads GROUNDWORK_OUT_DIR/packing.json, the only thing it takes from the edited program:
plain numbers, never code (pack.py is not imported, so nothing it patches, numpy included,
reaches this process; this file imports only the standard library). The task per profile
is fixed here (SETTINGS), never read from anything a run can write. The packing must be:
  - a JSON object with exactly the keys centers, radii, width, height;
  - exactly N centres of two numbers each and N radii (N: the profile's circle count);
  - finite numbers only (no NaN, no infinity, no booleans, no strings);
  - radii strictly positive;
  - inside the container: the unit square (width = height = 1 exactly), or for
    rect-perimeter-4 a rectangle of positive sides with width + height <= 2 + TOLERANCE;
    every circle within it: x - r >= -TOLERANCE, x + r <= width + TOLERANCE, same for y;
  - no two circles overlapping: distance between centres >= r_i + r_j - TOLERANCE,
with TOLERANCE = 1e-9. The first violation found is the error.

Sent to the job runner on the result channel (GROUNDWORK_RESULT_FD), or, run by hand without
one, written atomically to GROUNDWORK_RESULT_PATH:
  sum_radii     the sum of the radii (the metric; higher is better)
  circles       how many circles were scored
  mean_radius   sum_radii / circles; the runner checks sum_radii = mean_radius * circles
  min_radius, max_radius, width, height, min_gap (the smallest distance between two
  circles' edges or a circle and a wall; negative down to -TOLERANCE)
On any violation nothing is sent or written and the exit status is non-zero, with the
reason on stderr.
"""
import os
import sys

# Import nothing from the working folder by name (pack.py could have left a json.py there).
if __name__ == "__main__" and sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import json  # noqa: E402
import math  # noqa: E402
from typing import NoReturn  # noqa: E402

TOLERANCE = 1e-9
MAX_BYTES = 1 << 20
KEYS = {"centers", "radii", "width", "height"}
# The task per profile: circle count and container; locked here.
SETTINGS = {
    "n26": {"circles": 26, "container": "square"},
    "n21-rect": {"circles": 21, "container": "rect-perimeter-4"},
    "smoke": {"circles": 12, "container": "square"},
}

CHANNEL_OPENING = b"groundwork-result-channel 1\n"
CHANNEL_TAMPERED = 3
WRITE, FSTAT, EXIT = os.write, os.fstat, os._exit


class Invalid(Exception):
    """The packing breaks a rule; the message names the rule and the values."""


def fail(message: str) -> NoReturn:
    print(f"evaluate.py: error: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def number(value, where: str) -> float:
    if type(value) not in (int, float):  # bool is a subclass of int: refused too
        raise Invalid(f"{where} is {value!r}, not a number")
    try:
        value = float(value)
    except OverflowError:
        raise Invalid(f"{where} is an integer too large for a float") from None
    if not math.isfinite(value):
        raise Invalid(f"{where} is {value!r}, not a finite number")
    return value


def validate(packing, circles: int, container: str) -> dict:
    """The result for a valid packing; raises Invalid naming the first rule it breaks."""
    if type(packing) is not dict or set(packing) != KEYS:
        keys = sorted(packing) if type(packing) is dict else type(packing).__name__
        raise Invalid(f"the packing must be an object with exactly the keys {sorted(KEYS)}, got {keys}")
    centers, radii = packing["centers"], packing["radii"]
    if type(centers) is not list or len(centers) != circles:
        raise Invalid(f"expected {circles} centres, got {len(centers) if type(centers) is list else centers!r}")
    if type(radii) is not list or len(radii) != circles:
        raise Invalid(f"expected {circles} radii, got {len(radii) if type(radii) is list else radii!r}")
    xy = []
    for i, c in enumerate(centers):
        if type(c) is not list or len(c) != 2:
            raise Invalid(f"centers[{i}] is {c!r}, not a pair [x, y]")
        xy.append((number(c[0], f"centers[{i}][0]"), number(c[1], f"centers[{i}][1]")))
    r = [number(v, f"radii[{i}]") for i, v in enumerate(radii)]
    width, height = number(packing["width"], "width"), number(packing["height"], "height")
    if container == "square":
        if width != 1.0 or height != 1.0:
            raise Invalid(f"the container is the unit square: width and height must be 1, got {width!r} x {height!r}")
    else:
        if width <= 0 or height <= 0:
            raise Invalid(f"the rectangle's sides must be positive, got {width!r} x {height!r}")
        if width + height > 2.0 + TOLERANCE:
            perimeter = 2 * (width + height)
            raise Invalid(f"the rectangle's perimeter 2 * ({width!r} + {height!r}) = {perimeter!r} exceeds 4")
    min_gap = math.inf
    for i, ((x, y), ri) in enumerate(zip(xy, r, strict=True)):
        if ri <= 0:
            raise Invalid(f"radii[{i}] = {ri!r} is not positive")
        for side, gap in (("left", x - ri), ("right", width - x - ri), ("bottom", y - ri), ("top", height - y - ri)):
            if gap < -TOLERANCE:
                raise Invalid(
                    f"circle {i} (centre ({x!r}, {y!r}), radius {ri!r}) crosses the {side} side by {-gap:.3g}"
                )
            min_gap = min(min_gap, gap)
    for i in range(circles):
        for j in range(i + 1, circles):
            gap = math.hypot(xy[i][0] - xy[j][0], xy[i][1] - xy[j][1]) - (r[i] + r[j])
            if gap < -TOLERANCE:
                raise Invalid(f"circles {i} and {j} overlap by {-gap:.3g} (radii {r[i]!r} and {r[j]!r})")
            min_gap = min(min_gap, gap)
    total = math.fsum(r)
    return {
        "sum_radii": total,
        "circles": circles,
        "mean_radius": total / circles,
        "min_radius": min(r),
        "max_radius": max(r),
        "width": width,
        "height": height,
        "min_gap": min_gap,
        "checks": [{"value": "sum_radii", "product_of": {"mean_radius": 1, "circles": 1}}],
    }


def read_packing(path: str):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as exc:
        raise Invalid(f"pack.py wrote no packing at {path}: {exc}") from None
    if len(data) > MAX_BYTES:
        raise Invalid(f"{path} is larger than {MAX_BYTES} bytes")
    try:  # NaN and Infinity parse, so that the check of each number can name the bad one
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Invalid(f"{path} is not JSON: {exc}") from None


def open_channel():
    value = os.environ.get("GROUNDWORK_RESULT_FD", "")
    if not value:
        return None
    try:
        fd = int(value)
        stat = FSTAT(fd)
        WRITE(fd, CHANNEL_OPENING)
    except (ValueError, OSError) as exc:
        fail(f"GROUNDWORK_RESULT_FD={value!r} is not an open pipe to write the result to: {exc}")
    return fd, (stat.st_dev, stat.st_ino)


def report(result: dict, channel) -> None:
    if channel is None:
        path = os.environ.get("GROUNDWORK_RESULT_PATH", "result.json")
        tmp = f"{path}.tmp-{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
        return
    fd, identity = channel
    message = (json.dumps(result) + "\n").encode("ascii")
    try:
        stat = FSTAT(fd)
        if (stat.st_dev, stat.st_ino) != identity:
            raise OSError("it is no longer the pipe the runner gave")
        while message:
            message = message[WRITE(fd, message):]
    except OSError as exc:
        print(f"evaluate.py: error: the result channel was tampered with: {exc}", file=sys.stderr, flush=True)
        EXIT(CHANNEL_TAMPERED)
    EXIT(0)


def main() -> None:
    channel = open_channel()
    profile = os.environ.get("GROUNDWORK_PROFILE", "n26")
    if profile not in SETTINGS:
        fail(f"unknown profile {profile!r}: evaluate.py knows {sorted(SETTINGS)}")
    task = SETTINGS[profile]
    path = os.path.join(os.environ.get("GROUNDWORK_OUT_DIR", "out"), "packing.json")
    try:
        result = validate(read_packing(path), task["circles"], task["container"])
    except Invalid as exc:
        fail(f"invalid packing: {exc}")
    print(f"sum_radii {result['sum_radii']:.9f} over {result['circles']} circles (valid to {TOLERANCE:g})")
    sys.stdout.flush()
    report(result, channel)


if __name__ == "__main__":
    main()
