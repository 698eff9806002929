"""Writing files so that nothing is ever half-written or silently replaced.

Every artifact goes to a temporary name in the same folder (unique per process, so two runs writing the
same target never rename each other's file away) and is renamed over the target only when complete; a
failure removes the temporary file. ``refuse_overwrite`` is the one place that says "use --force".
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import DssdnError


def refuse_overwrite(path: Path, force: bool, what: str = "already exists") -> None:
    """Raise unless ``path`` is free or ``force`` is set; a folder where a file is wanted is never replaced."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        raise DssdnError(f"{path}: is a folder, expected a file name")
    if path.exists() and not force:
        raise DssdnError(f"{path}: {what} (use --force to overwrite)")


def temp_name(path: Path) -> Path:
    """A hidden sibling of ``path`` unique to this process; keeps the suffix so writers that add one
    (``np.save``) or dispatch on it (matplotlib) behave."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")


@contextmanager
def atomic_path(path: str | Path, force: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path`` in one rename.

    ``force=False`` refuses an existing target before anything is written.
    """
    path = Path(path)
    refuse_overwrite(path, force)
    if not path.parent.is_dir():
        raise DssdnError(f"{path.parent}: output folder does not exist")
    tmp = temp_name(path)
    try:
        yield tmp
        if tmp.is_file():  # some writers create private (0600) files: give the usual permissions
            os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def current_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_bytes(path: str | Path, data: bytes, force: bool = True) -> Path:
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: str | Path, text: str, force: bool = True) -> Path:
    with atomic_path(path, force) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(path: str | Path, data: Any, force: bool = True, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(data, indent=indent, default=str) + "\n", force)
