"""Benchmark several devices at once over ssh and compare them in one report.

Why in parallel: each device measures on its own CPU, so running them together costs the wall time of the
slowest one instead of the sum (the host only copies files and waits). Why failures are kept per device:
in a fleet one Pi is always off, renamed or missing a runtime; its error is recorded beside the others'
results instead of stopping them, and the command exits non-zero only after every device has finished.

Devices come from ``--host`` given several times (all with ``--remote-python``) or a hosts file, one
device per line: ``NAME USER@HOST[:PORT] [REMOTE_PYTHON]`` (``#`` starts a comment). Names must differ:
two emulated boards behind one sshd share the target and differ by their interpreter.
"""

from __future__ import annotations

import re
import shlex
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import BenchError
from . import BenchOptions, finish, resolve_export, validate

FLEET_SCHEMA = "dssdn-fleet/1"


@dataclass(frozen=True)
class FleetDevice:
    """One device of a fleet: a unique name, its ssh target and the python that runs the runner there."""

    name: str
    host: str
    python: str = "python3"

    @property
    def slug(self) -> str:
        """A folder name for this device's own report."""
        return re.sub(r"[^A-Za-z0-9._-]+", "_", self.name).strip("_") or "device"


def parse_hosts_file(path: Path, default_python: str = "python3") -> list[FleetDevice]:
    """``NAME USER@HOST[:PORT] [REMOTE_PYTHON]`` per line; a bad line is one error naming file and line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise BenchError(f"{path}: hosts file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: unreadable hosts file ({exc})") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            words = shlex.split(line, comments=True)
        except ValueError as exc:
            raise BenchError(f"{path}:{number}: {exc}") from None
        if not words:
            continue
        if len(words) not in (2, 3):
            raise BenchError(f"{path}:{number}: expected NAME USER@HOST[:PORT] [REMOTE_PYTHON], got {line.strip()!r}")
        out.append(FleetDevice(words[0], words[1], words[2] if len(words) == 3 else default_python))
    if not out:
        raise BenchError(f"{path}: no devices in the hosts file")
    return out


def fleet_devices(hosts: Sequence[str], hosts_file: Path | None, remote_python: str) -> list[FleetDevice]:
    """The devices of ``--host`` (repeated) and ``--hosts FILE``, checked: valid targets, unique names."""
    from .remote import Target

    devices = [FleetDevice(h, h, remote_python) for h in hosts]
    if hosts_file is not None:
        devices += parse_hosts_file(hosts_file, remote_python)
    seen: set[str] = set()
    for d in devices:
        Target.parse(d.host)
        if d.python.startswith("-"):
            raise BenchError(f"device {d.name!r}: remote python {d.python!r} may not begin with '-'")
        if d.name in seen:
            raise BenchError(f"device {d.name!r} given twice; every device of a fleet needs its own name")
        seen.add(d.name)
    return devices


def _one(opts: BenchOptions, device: FleetDevice, export_dir: Path, progress: Any) -> dict[str, Any]:
    """One device's whole session; never raises (its error is its entry)."""
    from .remote import Target, run_remote

    entry: dict[str, Any] = {**asdict(device), "ok": False, "error": None, "result": None, "started": time.time()}
    try:
        result = run_remote(
            Target.parse(device.host),
            export_dir,
            opts.runtimes,
            opts.threads,
            opts.runs,
            opts.warmup,
            device.python,
            opts.ssh_config,
            opts.identity,
            progress,
            expect_machine="aarch64" if opts.device == "rpi" else None,
        )
        entry["result"] = finish(replace(opts, host=device.host), result, "measured", device.host)
        entry["ok"] = True
    except BenchError as exc:
        entry["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - a bug with one device must not hide the others' results
        entry["error"] = f"{type(exc).__name__}: {exc}".splitlines()[0]
    entry["finished"] = time.time()
    return entry


def run_fleet(opts: BenchOptions, devices: Sequence[FleetDevice]) -> dict[str, Any]:
    """Measure every device in parallel with the same export and settings; returns the fleet result."""
    if not devices:
        raise BenchError("no devices: give --host several times or --hosts FILE")
    if opts.device != "rpi":
        raise BenchError(f"a fleet (several --host or --hosts) is for --device rpi (got --device {opts.device})")
    validate(replace(opts, host=devices[0].host))
    from ..progress import progress_bar
    from . import _progress_callback

    with tempfile.TemporaryDirectory(prefix="dssdn-bench-export-") as tmp:
        export_dir, manifest = resolve_export(opts, Path(tmp))
        with progress_bar() as bar, ThreadPoolExecutor(max_workers=len(devices)) as pool:
            futures = [
                pool.submit(_one, opts, d, export_dir, _progress_callback(bar, d.name) if opts.progress else None)
                for d in devices
            ]
            entries = [f.result() for f in futures]
    return {
        "schema": FLEET_SCHEMA,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "export": {"name": manifest.get("name"), "dir": str(Path(export_dir).resolve())},
        "settings": {"device": opts.device, "threads": opts.threads, "runs": opts.runs, "warmup": opts.warmup,
                     "runtimes": opts.runtimes},
        "devices": entries,
        "failed": [e["name"] for e in entries if not e["ok"]],
    }


def default_fleet_out(opts: BenchOptions, fleet: dict[str, Any]) -> Path:
    from . import REPO_ROOT

    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return opts.out or REPO_ROOT / "runs" / "bench" / f"{fleet['export']['name']}-fleet-{stamp}"
