"""Writing an export folder all at once: built in a hidden staging folder, renamed into place when complete.

Why: an interrupted export must leave nothing behind and two exports into one folder must not mix their
files; a lock makes the second one stop at once with one line.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .. import runlock
from ..errors import ExportError


def staging_dir(out_dir: Path, force: bool) -> Path:
    """A hidden sibling folder unique to this process, where the export is built before it is renamed."""
    if out_dir.exists() and not force:
        raise ExportError(f"{out_dir}: already exists (pass --force to replace it)")
    if out_dir.exists() and not out_dir.is_dir():
        raise ExportError(f"{out_dir}: exists and is not a folder")
    staging = out_dir.parent / f".{out_dir.name}.partial{os.getpid()}"
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as exc:
        raise ExportError(
            f"{out_dir.parent}: cannot create the export folder there ({exc.strerror})"
        ) from None
    return staging


def exclusive(out_dir: Path):
    """One export at a time into a folder (``runlock``, shared with train): a second one started meanwhile
    fails at once with one line naming the first."""
    return runlock.exclusive(out_dir, "export", ExportError)


def publish(staging: Path, out_dir: Path) -> None:
    """Swap the finished staging folder into place; the old export (``--force``) is removed after."""
    old = out_dir.parent / f".{out_dir.name}.old{os.getpid()}"
    try:
        if out_dir.exists():
            if old.exists():
                shutil.rmtree(old)
            out_dir.rename(old)
        staging.rename(out_dir)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot move the finished export into place ({exc.strerror})") from None
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)
