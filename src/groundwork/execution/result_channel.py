"""The result channel: a pipe from the locked evaluation to the job runner.

A result file in the work folder can be rewritten by anything the evaluation's process runs
after it wrote the file (an `atexit` handler, a timer, a thread or a forked child of an
edited train.py the evaluation imported). The pipe cannot be rewritten: what was sent is
sent. The runner announces the pipe's write end as GROUNDWORK_RESULT_FD; an evaluation that
uses it writes, in this order:

    OPENING                      at start, before it imports any editable code
    one JSON object, one line    the result, then it exits at once (os._exit)

and exits with status 3 (TAMPERED_EXIT) when it finds the channel closed or replaced.

Anything else on the pipe (a second message, a message before the real one, junk, an
opening with no result) means something else in the evaluation's process wrote there, and
a used pipe still held open after the evaluation's process group was killed means a
process escaped the group with it: either way the job is refused as tampered. Nothing on
the pipe: the evaluation does not use the channel, and the result file counts (the older
contract, only as trustworthy as an evaluation that runs no editable code; see
docs/environments.md).

The opening is what makes the channel binding: it is sent before any editable code runs,
so code imported later cannot make a channel evaluation look like a file one. Code that
runs in the evaluation's process before the result is sent can still forge a whole
result and end the process first; the channel closes the after-the-fact routes, and
`metric_checks` the careless forgeries.
"""

from __future__ import annotations

import json
import os
import select
import threading
from dataclasses import dataclass

FD_ENV = "GROUNDWORK_RESULT_FD"
OPENING = b"groundwork-result-channel 1\n"
MAX_BYTES = 1 << 20  # far above any result; more is junk, and reading stops there
TAMPERED_EXIT = 3
DIVERGED_EXIT = 4  # an evaluation that finds the model's outputs non-finite exits with this
DRAIN_S = 5.0  # after the evaluation's group was killed: how long its processes may take to let go


class ChannelTampered(Exception):
    """The pipe held something other than the evaluation's opening and one result."""


@dataclass(frozen=True)
class Received:
    data: bytes
    overflowed: bool
    held_open: bool = False  # a write end was still open DRAIN_S after the evaluation ended


class ResultPipe:
    """The runner's side: a pipe whose write end goes to the evaluation, read by a thread
    (a full pipe never blocks the evaluation)."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe()
        self._chunks: list[bytes] = []
        self._size = 0
        self._eof = threading.Event()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="result-channel", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.read_fd], [], [], 0.1)
            if ready and not self._take():
                self._eof.set()
                return

    def _take(self) -> bool:
        """Read what is there; False at end of file (every write end closed)."""
        chunk = os.read(self.read_fd, 65536)
        if not chunk:
            return False
        if self._size <= MAX_BYTES:
            self._chunks.append(chunk)
        self._size += len(chunk)
        return True

    def finish(self) -> Received:
        """After the evaluation exited: close the runner's write end, wait a moment for any
        other holder (a process the evaluation left behind is killed with its group), then
        stop reading. A late writer finds the pipe closed."""
        if self.write_fd >= 0:
            os.close(self.write_fd)
            self.write_fd = -1
        held_open = not self._eof.wait(DRAIN_S)
        self._stop.set()
        self._reader.join()
        os.set_blocking(self.read_fd, False)
        try:
            while self._take():
                pass
        except BlockingIOError:
            pass
        os.close(self.read_fd)
        data = b"".join(self._chunks)
        return Received(data[:MAX_BYTES], self._size > MAX_BYTES, held_open)

    def close(self) -> None:
        """Release both ends (when the evaluation never ran)."""
        for fd in (self.write_fd, self.read_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._stop.set()


@dataclass(frozen=True)
class Sent:
    opened: bool  # the evaluation uses the channel
    result: dict | None  # None: it sent no result (it failed, or something silenced it)


def parse(received: Received) -> Sent:
    """What the evaluation sent. Raises ChannelTampered for anything but the opening and at
    most one JSON object (an opening alone: the evaluation failed before its result, or
    something in its process closed or replaced the channel; the runner tells which)."""
    data = received.data
    if not data:
        return Sent(False, None)
    if received.held_open:
        raise ChannelTampered(
            f"a process outlived the evaluation and still held its result channel {DRAIN_S:g}s later "
            "(left behind by code the evaluation imported)"
        )
    if received.overflowed:
        raise ChannelTampered(f"more than {MAX_BYTES} bytes arrived on the result channel")
    if not data.startswith(OPENING):
        raise ChannelTampered(f"the result channel received {_show(data)} before the evaluation's opening line")
    lines = data[len(OPENING) :].split(b"\n")
    if lines[-1]:
        raise ChannelTampered(f"the result channel ended in an unfinished message: {_show(lines[-1])}")
    messages = lines[:-1]
    if not messages:
        return Sent(True, None)
    if len(messages) > 1:
        raise ChannelTampered(
            f"the result channel received {len(messages)} messages, not one: "
            + "; ".join(_show(m) for m in messages[:3])
        )
    try:
        result = json.loads(messages[0])
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ChannelTampered(f"the result channel's message is not JSON ({exc}): {_show(messages[0])}") from None
    if not isinstance(result, dict):
        raise ChannelTampered(f"the result channel's message is not a JSON object: {_show(messages[0])}")
    return Sent(True, result)


def _show(data: bytes, limit: int = 120) -> str:
    text = data[:limit].decode("utf-8", errors="replace")
    return repr(text + ("..." if len(data) > limit else ""))
