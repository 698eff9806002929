"""Progress bars for long work (feature extraction, training, calibration, benchmarking)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

T = TypeVar("T")


def _enabled() -> bool:
    return os.environ.get("DSSDN_PROGRESS", "1") != "0"


def progress_bar() -> Progress:
    """A rich progress bar on stderr; silent when DSSDN_PROGRESS=0 (tests, CI logs)."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
        disable=not _enabled(),
        transient=not sys.stderr.isatty(),
    )


def progress(items: Iterable[T], desc: str, total: int | None = None) -> Iterator[T]:
    seq = list(items) if total is None else items
    total = len(seq) if total is None else total  # type: ignore[arg-type]
    with progress_bar() as bar:
        task = bar.add_task(desc, total=total, info="")
        for item in seq:
            yield item
            bar.advance(task)
