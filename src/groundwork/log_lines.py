"""The lines of a job's log that name its error: what the repair prompt keeps of a long log
and what the ideator is told of a failure."""

from __future__ import annotations

import re

# A Python exception ("RuntimeError: ...", "torch.OutOfMemoryError: ..."), or a script's own
# "prog: error: ..." line (the locked evaluations write those).
ERROR_LINE = re.compile(r"^\s*((\w+\.)*\w*(Error|Exception|Exit|Interrupt)\b|\S+: error\b)")
TRACEBACK_START = re.compile(r"^\s*Traceback \(most recent call last\)")
