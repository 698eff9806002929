"""Config dataclasses read back from JSON (checkpoint sidecars, manifests, run folders).

Why one helper: a sidecar written by a newer or a hand-edited version must fail on a key this version does not
know, with a message naming it, rather than on a ``TypeError`` from the constructor or by silently ignoring it.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any


def known_fields(cls: type, data: dict[str, Any], error: type[Exception], what: str) -> dict[str, Any]:
    """``data`` itself when every key is a field of the dataclass ``cls``; else ``error`` naming the others."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise error(f"unknown {what}: {unknown}")
    return data
