"""Benchmark an export on this CPU, a Raspberry Pi over ssh, or estimate it for a Cortex-M board.

``run_bench(BenchOptions(...))`` is the one entry point shared by ``dssdn-edge bench`` and
``benchmarks/run_all.py``: it checks every option first (so a typo fails in a second, not after an
export), picks the path (local / remote / estimate), and returns one result dict that
``report.write_report`` stores. Modules: ``runner`` (device side, self-contained), ``local``, ``remote``,
``devices`` (profiles and estimates), ``mcu`` (flash/RAM fit), ``sysinfo``, ``stats``, ``report``, ``fleet``
(several devices over ssh in parallel, one combined report). A device whose own python reports that it
runs under emulation (``dssdn-edge device emulate``) gets mode "emulated": its timings are never shown as
a device's.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..errors import BenchError
from ..runtime.manifest import MANIFEST, ManifestError, load_manifest, sha256_file
from . import devices, report, runner

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA = "dssdn-bench/1"


@dataclass
class BenchOptions:
    device: str = "cpu"
    export_dir: Path | None = None
    size: str | None = None
    host: str | None = None
    runtimes: list[str] | None = None  # None: the device's default set
    threads: int = 1
    runs: int = 200
    warmup: int = 20
    out: Path | None = None
    estimate: bool = False
    ssh_config: Path | None = None
    identity: Path | None = None
    remote_python: str = "python3"
    checkpoint: Path | None = None
    progress: bool = True
    exports_root: Path = field(default_factory=lambda: REPO_ROOT / "exports")


def validate(opts: BenchOptions) -> None:
    """Every argument error as one line, before anything slow happens."""
    devices.check_device(opts.device)
    if opts.runs < 1:
        raise BenchError(f"--runs must be at least 1 (got {opts.runs}); the published table uses 200")
    if opts.warmup < 0:
        raise BenchError(f"--warmup must be >= 0 (got {opts.warmup})")
    if opts.threads < 1:
        raise BenchError(f"--threads must be at least 1 (got {opts.threads})")
    if (opts.size is None) == (opts.export_dir is None):
        raise BenchError("give exactly one of --size and --export")
    if opts.remote_python.startswith("-"):
        raise BenchError(f"--remote-python {opts.remote_python!r}: may not begin with '-'")
    if opts.host:
        from .remote import Target

        Target.parse(opts.host)  # a malformed USER@HOST[:PORT] fails here, before any export work
    if opts.host and opts.device != "rpi":
        raise BenchError(f"--host is for --device rpi only (got --device {opts.device})")
    if opts.estimate and opts.device == "cpu":
        raise BenchError("--estimate is for --device rpi and the cortex-m devices; --device cpu is measured")
    if opts.estimate and opts.host:
        raise BenchError("--estimate and --host exclude each other: with a host the Pi is measured")
    for flag, path in (("--ssh-config", opts.ssh_config), ("--identity", opts.identity)):
        if path is not None and not Path(path).is_file():
            raise BenchError(f"{flag} {path}: file not found")
    if opts.runtimes is not None:
        from .local import RUNTIMES as LOCAL_RUNTIMES

        unknown = [r for r in opts.runtimes if r not in LOCAL_RUNTIMES]
        if unknown:
            raise BenchError(f"unknown runtime(s) {', '.join(unknown)}; choose from {', '.join(LOCAL_RUNTIMES)}")
        if opts.host:
            local_only = [r for r in opts.runtimes if r not in runner.RUNTIMES]
            if local_only:
                raise BenchError(
                    f"{', '.join(local_only)} run only on this machine; on the device choose from "
                    f"{', '.join(runner.RUNTIMES)}"
                )


def check_export(export_dir: Path) -> dict[str, Any]:
    """The manifest of ``export_dir`` with every file verified: by the strict check (hashes, sizes, no
    unlisted files) here, and again by the runner wherever it runs, since a copy can break."""
    if Path(export_dir).is_file():
        raise BenchError(f"{export_dir}: is a file; --export takes the export folder (the one with manifest.json)")
    if not Path(export_dir).is_dir():
        raise BenchError(f"{export_dir}: export folder not found")
    try:
        load_manifest(export_dir, verify=True)
        return runner.load_manifest(str(export_dir), verify=False)
    except (ManifestError, runner.RunnerError) as exc:
        raise BenchError(str(exc)) from None


def resolve_export(opts: BenchOptions, workdir: Path) -> tuple[Path, dict[str, Any]]:
    """(folder, verified manifest): ``--export DIR`` as given; ``--size S``: exports/dssdn-S when present
    and valid, else a fresh export of the shipped weights into ``workdir``."""
    if opts.export_dir is not None:
        return Path(opts.export_dir), check_export(Path(opts.export_dir))
    from ..model import resolve_name

    try:
        name = resolve_name(opts.size or "")
    except ValueError as exc:
        raise BenchError(str(exc)) from None
    shipped = opts.exports_root / name
    if (shipped / MANIFEST).is_file():
        try:
            return shipped, check_export(shipped)
        except BenchError:
            pass  # stale or modified: export afresh below rather than benchmark the wrong bytes
    folder = export_shipped(name, workdir / name)
    return folder, check_export(folder)


def export_shipped(name: str, out_dir: Path) -> Path:
    """Export the shipped weights of ``name`` with the project's exporter."""
    try:
        from ..export import export_model
    except ImportError as exc:
        raise BenchError(f"cannot export {name}: the exporter is not available ({exc})") from None
    from ..errors import DssdnError

    try:
        export_model(name, out_dir)
    except BenchError:
        raise
    except DssdnError as exc:
        raise BenchError(f"{name}: cannot export the shipped model ({exc})") from None
    return out_dir


def default_runtimes(opts: BenchOptions) -> list[str] | None:
    """None means 'whatever imports on the device' (a Pi, remote or local); this CPU gets all four."""
    if opts.runtimes is not None:
        return opts.runtimes
    if opts.device == "rpi":
        return None
    from .local import DEFAULT_LOCAL

    return list(DEFAULT_LOCAL)


def _progress_callback(bar: Any, desc: str) -> Any:
    state: dict[str, Any] = {}

    def update(done: int, total: int, label: str) -> None:
        if "task" not in state:
            state["task"] = bar.add_task(desc, total=total, info="")
        bar.update(state["task"], completed=done, total=total, info=label)

    return update


def run_bench(opts: BenchOptions) -> dict[str, Any]:
    """Validate, resolve the export, measure or estimate, add ratios; returns the result dict."""
    validate(opts)
    from .sysinfo import collect_local

    here = collect_local()
    mode = "measured"
    if opts.device == "rpi" and not opts.host and not opts.estimate:
        if not here.is_raspberry_pi:
            raise BenchError(
                "--device rpi needs --host USER@HOST[:PORT] (this machine is not a Raspberry Pi), "
                "or --estimate for a MAC-based estimate"
            )
    estimate_only = opts.estimate or opts.device.startswith("cortex-m")
    with tempfile.TemporaryDirectory(prefix="dssdn-bench-export-") as tmp:
        export_dir, manifest = resolve_export(opts, Path(tmp))
        result: dict[str, Any]
        if estimate_only:
            mode = "estimate"
            result = _estimate(opts, export_dir, manifest)
        else:
            result = _measure(opts, export_dir, here)
    return finish(opts, result, mode, opts.host)


def finish(opts: BenchOptions, result: dict[str, Any], mode: str, host: str | None) -> dict[str, Any]:
    """Stamp schema, time, device and ratios on one device's result (``run_bench`` and the fleet share it).
    A device whose own python says it is emulated gets mode "emulated", never "measured"."""
    facts = (result.get("remote") or {}).get("device") or {}
    if mode == "measured" and facts.get("emulated"):
        mode = "emulated"
    result.setdefault("warnings", [])
    result["schema"] = SCHEMA
    result["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["device"] = {
        "kind": opts.device,
        "mode": mode,
        "name": _device_name(opts, result),
        "host": host,
    }
    result["ratios"] = report.ratios(result)
    return result


def _measure(opts: BenchOptions, export_dir: Path, here: Any) -> dict[str, Any]:
    from ..progress import progress_bar
    from .local import run_local
    from .remote import Target, run_remote
    from .sysinfo import collect_local

    runtimes = default_runtimes(opts)
    with progress_bar() as bar:
        cb = _progress_callback(bar, f"bench {export_dir.name}") if opts.progress else None
        if opts.host:
            return run_remote(
                Target.parse(opts.host),
                export_dir,
                runtimes,
                opts.threads,
                opts.runs,
                opts.warmup,
                opts.remote_python,
                opts.ssh_config,
                opts.identity,
                cb,
                expect_machine="aarch64" if opts.device == "rpi" else None,
            )
        result = run_local(export_dir, runtimes, opts.threads, opts.runs, opts.warmup, cb, opts.checkpoint)
    result["sysinfo"] = {"before": here.to_dict(), "after": collect_local().to_dict()}
    return result


def _estimate(opts: BenchOptions, export_dir: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    from . import mcu

    macs = manifest.get("complexity", {}).get("macs")
    if not isinstance(macs, int) or macs <= 0:
        raise BenchError(f"{export_dir}/manifest.json: no complexity.macs, cannot estimate")
    result: dict[str, Any] = {
        "export": {
            "name": manifest.get("name"),
            "dir": str(Path(export_dir).resolve()),
            "verified": True,
            "manifest_sha256": sha256_file(Path(export_dir) / MANIFEST),
            "complexity": manifest.get("complexity", {}),
            "frontend": manifest["frontend"],
        },
        "settings": {"threads": opts.threads, "runs": 0, "warmup": 0, "runtimes": []},
        "results": [],
        "frontend": {},
        "interrupted": False,
        "estimates": [e.to_dict() for e in devices.estimates_for(opts.device, macs, opts.threads)],
    }
    if opts.device in devices.BOARDS:
        fp = mcu.footprint(export_dir, manifest, opts.device)
        result["mcu"] = {
            "footprint": fp.to_dict(),
            "fits": [mcu.fit(fp, b).to_dict() for b in devices.BOARDS.values()],
            "boards": {k: b.to_dict() for k, b in devices.BOARDS.items()},
        }
    return result


def _device_name(opts: BenchOptions, result: dict[str, Any]) -> str:
    info = result.get("sysinfo", {}).get("before", {})
    facts = (result.get("remote") or {}).get("device") or {}
    if facts:  # the device's own view (under emulation the ssh host's shell would name the host's CPU)
        name = facts.get("device_model") or " ".join(str(facts[k]) for k in ("cpu_model", "machine") if facts.get(k))
        return str(name or opts.device)
    if opts.device in devices.BOARDS:
        return f"{devices.BOARDS[opts.device].name} ({devices.BOARDS[opts.device].core})"
    if opts.device == "rpi" and not info:
        return "Raspberry Pi 4/5"
    return str(info.get("device_model") or info.get("cpu_model") or opts.device)


def default_out(opts: BenchOptions, result: dict[str, Any]) -> Path:
    """``--out``, or a new folder per run (never an earlier run's results)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    return opts.out or REPO_ROOT / "runs" / "bench" / f"{result['export']['name']}-{opts.device}-{stamp}"


REPORT_FILES = ("bench.json", "bench.md", "bench_latency.png")


__all__ = ["REPORT_FILES", "BenchOptions", "check_export", "default_out", "run_bench", "validate"]
