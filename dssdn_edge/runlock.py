"""One writer per output folder: the lock that export and train share.

Two runs into the same ``--out`` would each believe it wrote the result, and only the last rename
survives. The lock is an ``flock`` on a hidden sibling file (``.<name>.lock``), so it exists before the
folder does and vanishes with the process that holds it (a killed run never leaves a stale lock). The
holder writes who it is into the file, so the second run's one line names it.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import DssdnError


def lock_path(out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    return out_dir.parent / f".{out_dir.name}.lock"


def _holder(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except OSError:
        text = ""
    return text.splitlines()[0][:200] if text else "pid unknown"


@contextmanager
def exclusive(out_dir: str | Path, what: str, error: type[DssdnError] = DssdnError) -> Iterator[None]:
    """Hold the lock of ``out_dir`` for ``what`` ("export", "training"); a second holder fails at once with
    ``error`` naming the first (pid, host, since when)."""
    out_dir = Path(out_dir)
    path = lock_path(out_dir)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    except OSError as exc:
        raise error(f"{out_dir.parent}: cannot create the {what} folder there ({exc.strerror})") from None
    try:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise error(f"{out_dir}: another {what} into this folder is running ({_holder(path)}); wait for "
                            "it or use another output folder") from None
            try:  # the previous holder may have removed the file between our open and our lock
                if os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino:
                    break
            except FileNotFoundError:
                pass
            fh.close()
            fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n")
        fh.flush()
        try:
            yield
        finally:
            path.unlink(missing_ok=True)  # while still held: a waiting run then locks a fresh file
    finally:
        fh.close()
