"""Where files may be read from and written to: the cache folder, confined relative paths, regular files.

Three rules every reader of user-named paths shares, so each is written once:

* ``cache_dir()``: caches live in the user's cache folder (``$DSSDN_CACHE``, else platformdirs'
  ``user_cache_dir("dssdn-edge")``, which honours ``$XDG_CACHE_HOME`` on Linux), never beside the package:
  in a regular install that would be inside site-packages.
* ``confined(base, rel, source)``: a path that a manifest, sidecar or CSV gives *relative to its own
  folder* must stay inside that folder; an absolute name or one that climbs out with ``..`` is refused
  (a manifest naming ``/etc/passwd`` must not make us open and hash it).
* ``regular_file(path)``: only regular files are opened as audio or models. A named pipe would block the
  reader forever, a device (``/dev/zero``) never ends, a folder is not a file; each gets one line that
  names what the path really is, never a misleading "not found".
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import DssdnError

APP_NAME = "dssdn-edge"


def cache_dir() -> Path:
    """``$DSSDN_CACHE``, else the user's cache folder for dssdn-edge (e.g. ``~/.cache/dssdn-edge``)."""
    env = os.environ.get("DSSDN_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir(APP_NAME, appauthor=False))


def kind_of(st_mode: int) -> str:
    """What a non-regular file is, in words a user recognises."""
    if stat.S_ISDIR(st_mode):
        return "a folder"
    if stat.S_ISFIFO(st_mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(st_mode):
        return "a character device"
    if stat.S_ISBLK(st_mode):
        return "a block device"
    if stat.S_ISSOCK(st_mode):
        return "a socket"
    return "not a regular file"


def file_problem(path: str | Path) -> str | None:
    """None for a regular file (symlinks followed); otherwise why it cannot be read as one."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return "broken symbolic link" if path.is_symlink() else "no such file"
    except NotADirectoryError:
        return "no such file (a parent is not a folder)"
    except PermissionError:
        return "permission denied"
    except OSError as exc:
        return exc.strerror or str(exc)
    if stat.S_ISREG(st.st_mode):
        return None
    return f"is {kind_of(st.st_mode)}, not a regular file"


def regular_file(path: str | Path, what: str = "file", error: type[DssdnError] = DssdnError) -> Path:
    """``path`` if it is a regular file; else ``error`` naming the real cause (missing, a folder, a FIFO ...)."""
    why = file_problem(path)
    if why is not None:
        if why == "no such file":
            why = f"{what} not found"
        elif why.startswith("is "):
            why = f"{why[:-len('a regular file')]}{'an' if what[0] in 'aeiou' else 'a'} {what}"
        raise error(f"{path}: {why}")
    return Path(path)


def confined(base: str | Path, rel: str, source: str | Path, error: type[DssdnError] = DssdnError) -> Path:
    """``base / rel`` for a name that ``source`` gives relative to ``base``; refuses absolute names and
    names that lead outside ``base`` (after resolving ``..`` and symbolic links) with one line."""
    if not isinstance(rel, str) or not rel:
        raise error(f"{source}: empty file name")
    if Path(rel).is_absolute() or rel.startswith("~"):
        raise error(f"{source}: file name {rel!r} is absolute; names here are relative to {base}")
    base_real = Path(base).resolve()
    target = Path(base) / rel
    real = target.resolve()
    if real != base_real and base_real not in real.parents:
        raise error(f"{source}: file name {rel!r} leads outside {base} (to {real}); refused")
    return target


def lexically_confined(base: str | Path, rel: str, source: str | Path,
                       error: type[DssdnError] = DssdnError) -> Path:
    """Like ``confined`` but without following symbolic links: a dataset folder may link to audio kept
    elsewhere by its owner, while a name that climbs out with ``..`` or is absolute is still refused."""
    if not isinstance(rel, str) or not rel:
        raise error(f"{source}: empty file name")
    if Path(rel).is_absolute() or rel.startswith("~"):
        raise error(f"{source}: file name {rel!r} is absolute; names here are relative to {base}")
    norm = os.path.normpath(rel)
    if norm == ".." or norm.startswith(".." + os.sep):
        raise error(f"{source}: file name {rel!r} leads outside {base}; refused")
    return Path(base) / rel
