"""Implementers: the policies that turn an idea into a patch (model-written, catalog, knob),
and which failed runs get repaired. The patch mechanics live in `groundwork.patch`."""
