"""Catalog edits: the deterministic code change a catalog entry or a knob idea names.

An edit either sets a top-level `knob = value` assignment or replaces one literal text;
`apply_edits` makes them on file texts, and the caller turns old and new texts into a diff.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, model_validator


class EditError(ValueError):
    """A catalog edit that cannot be made on the codebase."""


class Edit(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    file: str
    knob: str | None = None
    value: str | None = None
    find: str | None = None
    replace: str | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Edit:
        knob = self.knob is not None and self.value is not None
        literal = self.find is not None and self.replace is not None
        if knob == literal:
            raise ValueError("an edit has either `knob` and `value`, or `find` and `replace`")
        return self

    @property
    def target(self) -> str:
        """What the edit changes; two edits with one target conflict."""
        return f"{self.file}:{self.knob if self.knob else self.find}"


def apply_edits(files: dict[str, str], edits: list[Edit]) -> dict[str, str]:
    """Make the edits on copies of the file texts; raise EditError naming the one that fails."""
    out = dict(files)
    for edit in edits:
        if edit.file not in out:
            raise EditError(f"{edit.file}: no such editable file")
        text = out[edit.file]
        if edit.knob is not None:
            pattern = re.compile(rf"^({re.escape(edit.knob)}\s*=\s*)([^#\n]*?)(\s*#.*)?$", re.MULTILINE)
            matches = pattern.findall(text)
            if len(matches) != 1:
                raise EditError(f"{edit.file}: expected one `{edit.knob} = ...` line, found {len(matches)}")
            out[edit.file] = pattern.sub(
                lambda m, value=edit.value: f"{m.group(1)}{value}{m.group(3) or ''}", text, count=1
            )
        else:
            count = text.count(edit.find or "")
            if count != 1:
                raise EditError(f"{edit.file}: expected the text {edit.find!r} once, found it {count} times")
            out[edit.file] = text.replace(edit.find or "", edit.replace or "", 1)
    return out
