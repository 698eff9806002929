"""Class names that are safe to print: the one rule for checkpoints, datasets and printed output.

A class name ends up on a line of ``predict``'s output, in a manifest and in a report; a newline or another
control character in it would forge an extra line (``dog\\nforged: cat 99 %``). Validators refuse such
names (``label_problem``) and anything printed goes through ``safe_label``.
"""

from __future__ import annotations

from typing import Any

MAX_LABELS = 1000


def label_problem(labels: Any, outputs: int | None = None) -> str | None:
    """None for usable labels; else why not (one line)."""
    if not isinstance(labels, list) or len(labels) < 2:
        return "'labels' must be a list of at least 2 names"
    if len(labels) > MAX_LABELS:
        return f"{len(labels)} labels; at most {MAX_LABELS} are supported"
    for i, lab in enumerate(labels):
        if not isinstance(lab, str) or not lab.strip():
            return f"label {i} is empty or not a string"
        if not lab.isprintable():
            return f"label {i} ({safe_label(lab)}) holds a control or non-printable character"
    seen: dict[str, int] = {}
    for i, lab in enumerate(labels):
        if lab in seen:
            return f"label {safe_label(lab)} appears twice (positions {seen[lab]} and {i})"
        seen[lab] = i
    if outputs is not None and outputs != len(labels):
        return f"{len(labels)} labels for a model with {outputs} outputs"
    return None


def safe_label(text: str) -> str:
    """``text`` safe for one line of output: control and other non-printable characters escaped."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
