"""Error types the CLI turns into one-line messages and a non-zero exit.

Every error raised for bad user input is a ``DssdnError`` whose message already names the file and the
problem, so the CLI never needs to add context and a library user can catch one base class.
"""

from __future__ import annotations


class DssdnError(Exception):
    """Base class for every user-facing error of dssdn-edge."""


class AudioError(DssdnError):
    """An audio file is missing, unreadable, empty, NaN or too short."""


class CheckpointError(DssdnError):
    """A checkpoint is missing, truncated, or does not match its sidecar, size or front end."""


class ExportError(DssdnError):
    """An export cannot be produced or an exported artifact fails its checks."""


class BenchError(DssdnError):
    """A benchmark cannot run: bad arguments, unreachable device, missing runtime."""


class DeviceError(DssdnError):
    """An emulated device or a cross-compiled build cannot be made: missing tool, failed build, bad cache."""


class ArchiveUnreachable(DeviceError):
    """A package archive (Debian's or PyPI) could not be reached; tests skip on this one, tools fail."""
