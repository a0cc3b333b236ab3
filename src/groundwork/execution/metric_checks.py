"""Relations a result states between its own numbers, checked by the runner.

An evaluation logs values it computed independently of the metric (the loss behind a
bits-per-byte figure, the count of correct answers behind an accuracy) and lists how they
relate under the result's `checks` key:

    {"value": "val_bpb", "factor": 1.4427, "product_of": {"val_loss": 1}}
    {"value": "accuracy", "product_of": {"correct": 1, "eval_problems": -1}}

each meaning result[value] == factor * prod(result[key] ** power) (factor 1 when left out),
to a relative tolerance of 1e-9. A result whose metric was rewritten without its sources
breaks a relation, and the job is refused with both numbers.
"""

from __future__ import annotations

import math

REL_TOL = 1e-9


class CheckFailed(Exception):
    """A relation a result states does not hold, or cannot be read."""


def check_relations(result: dict) -> int:
    """Check every relation in result["checks"] (none: nothing to check); the count checked."""
    checks = result.get("checks", [])
    if not isinstance(checks, list):
        raise CheckFailed(f"'checks' must be a list of relations, got {checks!r}")
    for check in checks:
        _check_one(result, check)
    return len(checks)


def _number(result: dict, key: object, where: str) -> float:
    value = result.get(key) if isinstance(key, str) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CheckFailed(f"{where} names {key!r}, which is not a finite number in the result: {value!r}")
    return float(value)


def _check_one(result: dict, check: object) -> None:
    if not isinstance(check, dict) or not isinstance(check.get("product_of"), dict) or not check["product_of"]:
        raise CheckFailed(f"a check must be {{'value': KEY, 'product_of': {{KEY: POWER, ...}}}}, got {check!r}")
    name = check.get("value")
    stated = _number(result, name, "a check")
    factor = check.get("factor", 1)
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(factor):
        raise CheckFailed(f"the check of {name!r} has a factor that is not a finite number: {factor!r}")
    expected = float(factor)
    terms = []
    for key, power in check["product_of"].items():
        if isinstance(power, bool) or not isinstance(power, (int, float)):
            raise CheckFailed(f"the check of {name!r} gives {key!r} a power that is not a number: {power!r}")
        base = _number(result, key, f"the check of {name!r}")
        if base == 0 and power < 0:
            raise CheckFailed(f"the check of {name!r} divides by {key!r} = 0")
        expected *= base**power
        terms.append(f"{key} = {base!r}")
    if not math.isclose(stated, expected, rel_tol=REL_TOL, abs_tol=1e-12):
        formula = " * ".join(
            ([f"{factor!r}"] if factor != 1 else [])
            + [k if p == 1 else f"{k}^{p!r}" for k, p in check["product_of"].items()]
        )
        raise CheckFailed(
            f"the result says {name} = {stated!r}, but {formula} = {expected!r} ({', '.join(terms)}): "
            "the metric disagrees with the values the evaluation logged beside it"
        )
