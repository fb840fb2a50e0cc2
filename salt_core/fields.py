"""Dataclass configs from untrusted dicts (checkpoint headers, YAML): only known fields, or one clear error."""
from __future__ import annotations

import dataclasses


def fields_from_dict(cls, d: dict) -> dict:
    """Check that d names only fields of the dataclass cls; a clear error lists the unknown ones."""
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a mapping of fields, got {type(d).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"{cls.__name__}: unknown fields {unknown}; expected a subset of {sorted(known)}")
    return dict(d)
