"""Locked MATH answer grader for the grpo environment's evaluation (hidden from ideators).

    grade_r1_zero(completion, gold) -> (well_formed, correct)
    extract_answer(text)            -> the final answer a completion gives, or None
    normalize(answer)               -> a canonical string form of an answer
    is_equivalent(predicted, gold)  -> whether two answers are the same mathematical object

A completion in the r1_zero format reads "... </think> <answer> ... </answer>"; its answer
is the content of the last answer tag, or of the last \\boxed{...} inside it (or anywhere,
for completions without tags). Two answers are equivalent when their normal forms are equal
(fractions, \\dfrac, spaces, units, \\text, degrees, percent, trailing ".0", thousands
separators, "x =" prefixes and LaTeX spacing all normalised away), or when sympy proves
their difference zero within SYMPY_TIMEOUT_S. Tuples and intervals compare element by
element. The training reward in train.py is separate and never enters the score.
"""
from __future__ import annotations

import re
import signal
import threading
from contextlib import contextmanager

SYMPY_TIMEOUT_S = 2.0
REARM_S = 0.05  # after the first alarm, again this often until the comparison gives up
NUMBER_TOLERANCE = 1e-6  # relative, for answers that only compare as numbers
UNIT_WORDS = (
    "degrees", "degree", "units", "unit", "square", "sq", "cm", "meters", "meter", "inches", "inch", "feet",
    "foot", "ft", "miles", "mile", "mph", "hours", "hour", "minutes", "minute", "seconds", "second", "days",
    "day", "dollars", "dollar", "cents", "cent", "km", "kg", "grams", "gram", "pounds", "pound", "points",
    "ways", "students", "people", "cups", "marbles", "coins",
)
_UNITS = re.compile(r"(?:\\(?:text|textbf|mbox|mathrm)\s*\{\s*)?(?:" + "|".join(UNIT_WORDS) + r")(?:\^?\{?[23]\}?)?\s*\}?$")


def _braced(text: str, start: int) -> tuple[str, int] | None:
    """The content of the {...} group opening at text[start], and the index after it."""
    if start >= len(text) or text[start] != "{":
        return None
    depth = 0
    for i in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        if depth == 0:
            return text[start + 1:i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """The content of the last \\boxed{...} or \\fbox{...} (or "\\boxed 5") in text."""
    found = None
    for match in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        group = _braced(text, match.end())
        if group is not None:
            found = group[0]
        else:
            bare = re.match(r"[^\s${}]+", text[match.end():])
            if bare:
                found = bare.group(0)
    return found


def extract_answer(text: str) -> str | None:
    tagged = re.findall(r"<answer>(.*?)</answer>", text, flags=re.DOTALL)
    if tagged:
        inner = tagged[-1]
        boxed = last_boxed(inner)
        return (boxed if boxed is not None else inner).strip()
    boxed = last_boxed(text)
    return boxed.strip() if boxed is not None else None


def _fix_fracs(s: str) -> str:
    r"""\frac12 -> \frac{1}{2}, \frac1{b} -> \frac{1}{b}, \sqrt2 -> \sqrt{2}."""
    s = re.sub(r"\\frac\s*([0-9a-zA-Z])\s*([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    s = re.sub(r"\\frac\s*([0-9a-zA-Z])\s*\{", r"\\frac{\1}{", s)
    s = re.sub(r"\\frac\s*\{([^{}]*)\}\s*([0-9a-zA-Z])", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt\s*([0-9a-zA-Z])", r"\\sqrt{\1}", s)


def normalize(answer: str) -> str:
    s = answer.strip()
    s = re.sub(r"^\$+|\$+$", "", s).strip()
    s = s.replace("\n", "").rstrip(".").strip()
    s = re.sub(r"\\(?:left|right|displaystyle)", "", s)
    s = s.replace("{,}", ",")
    s = re.sub(r"\\[!,;:]|\\ |~", "", s)
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\circ", "").replace("°", "")
    s = s.replace("\\%", "").replace("%", "").replace("\\$", "")
    for _ in range(3):  # units, possibly inside \text{...}, possibly several words
        s = _UNITS.sub("", s.strip()).strip()
    s = re.sub(r"\\(?:text|textbf|mbox|mathrm)\s*\{([^{}]*)\}", r"\1", s)
    s = re.sub(r"^[a-zA-Z]\s*=(?!=)", "", s)  # "x = 5" -> "5"
    s = s.replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", s):  # thousands separators: "1,000" -> "1000"
        s = s.replace(",", "")
    s = _fix_fracs(s)
    s = re.sub(r"(?<![\d.])\.(\d)", r"0.\1", s)  # ".5" -> "0.5"
    s = re.sub(r"^(-?\d+)\.0+$", r"\1", s)  # "5.00" -> "5"
    s = re.sub(r"^(-?\d+\.\d*?)0+$", r"\1", s)  # "2.50" -> "2.5"
    if re.fullmatch(r"-?\d+/\d+", s):
        num, den = s.split("/")
        s = f"\\frac{{{num.lstrip('-')}}}{{{den}}}"
        s = ("-" if num.startswith("-") else "") + s
    return s


def _split_top_level(s: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in s:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _latex_to_sympy_text(s: str) -> str:
    """A small LaTeX subset (fractions, roots, powers, pi, products) as sympy input text."""
    for _ in range(10):  # innermost first, until nothing changes
        before = s
        s = re.sub(r"\\frac\{([^{}]*)\}\{([^{}]*)\}", r"((\1)/(\2))", s)
        s = re.sub(r"\\sqrt\[([^\[\]]*)\]\{([^{}]*)\}", r"((\2)**(1/(\1)))", s)
        s = re.sub(r"\\sqrt\{([^{}]*)\}", r"sqrt(\1)", s)
        if s == before:
            break
    s = s.replace("\\pi", "pi").replace("\\cdot", "*").replace("\\times", "*").replace("^", "**")
    s = s.replace("{", "(").replace("}", ")").replace("\\infty", "oo")
    if "\\" in s:
        raise ValueError(f"unsupported LaTeX in {s!r}")
    return s


@contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError after `seconds` (SIGALRM: only in the main thread, else no limit),
    and again every REARM_S until the block ends: sympy catches broad exceptions in places,
    and a one-shot alarm it swallowed would leave the comparison running unbounded."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def _expired(signum, frame):
        raise TimeoutError(f"sympy took longer than {seconds}s")

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds, REARM_S)
    try:
        yield
    finally:
        while True:  # an alarm landing here would skip the disarming: disarm until it holds
            try:
                signal.setitimer(signal.ITIMER_REAL, 0)
                break
            except TimeoutError:
                continue
        signal.signal(signal.SIGALRM, previous)


def _sympy_equal(a: str, b: str) -> bool:
    import sympy
    from sympy.parsing.sympy_parser import (
        convert_xor, implicit_multiplication_application, parse_expr, standard_transformations)

    transformations = (*standard_transformations, implicit_multiplication_application, convert_xor)
    try:
        with _time_limit(SYMPY_TIMEOUT_S):
            x = parse_expr(_latex_to_sympy_text(a), transformations=transformations, evaluate=True)
            y = parse_expr(_latex_to_sympy_text(b), transformations=transformations, evaluate=True)
            if x.is_number and y.is_number:
                xv, yv = complex(sympy.N(x)), complex(sympy.N(y))
                return abs(xv - yv) <= NUMBER_TOLERANCE * max(1.0, abs(yv))
            return sympy.simplify(x - y) == 0
    except Exception:  # unparseable, unsupported or too slow: not proven equal
        return False


def is_equivalent(predicted: str | None, gold: str) -> bool:
    if predicted is None:
        return False
    a, b = normalize(predicted), normalize(gold)
    if not a:
        return False
    if a == b:
        return True
    brackets = re.compile(r"^([(\[])(.*)([)\]])$")
    ma, mb = brackets.match(a), brackets.match(b)
    if ma and mb:  # tuples and intervals: same brackets, equivalent elements
        if (ma.group(1), ma.group(3)) != (mb.group(1), mb.group(3)):
            return False
        xs, ys = _split_top_level(ma.group(2)), _split_top_level(mb.group(2))
        return len(xs) == len(ys) > 1 and all(is_equivalent(x, y) for x, y in zip(xs, ys))
    if "," in a or "," in b:  # unordered lists of answers, e.g. several roots
        xs, ys = _split_top_level(a), _split_top_level(b)
        if len(xs) != len(ys) or len(xs) < 2:
            return False
        remaining = list(ys)
        for x in xs:
            match = next((y for y in remaining if is_equivalent(x, y)), None)
            if match is None:
                return False
            remaining.remove(match)
        return True
    return _sympy_equal(a, b)


def grade_r1_zero(completion: str, gold: str) -> tuple[bool, bool]:
    """(well_formed, correct) for an r1_zero completion: the reasoning ends with "</think>",
    followed by "<answer> ... </answer>"; correct when well formed and equivalent to gold."""
    well_formed = re.search(r"</think>\s*<answer>.*?</answer>", completion, flags=re.DOTALL) is not None
    if not well_formed:
        return False, False
    return True, is_equivalent(extract_answer(completion), gold)
