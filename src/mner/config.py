"""Config dataclasses are built strictly: a key the dataclass does not have is an error, never ignored."""

from __future__ import annotations

import dataclasses


def build_strict(cls, values: dict, what: str):
    """``cls(**values)`` for a dataclass ``cls``; unknown keys raise ValueError naming them and the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; expected some of {sorted(known)}")
    return cls(**values)
