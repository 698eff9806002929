"""Benchmark on a device over ssh: copy the export and runner.py, run them with the device's python3.

It uses the system ``ssh``/``scp`` so the user's ssh config, keys and agent apply, always with
``BatchMode=yes`` (never a password prompt in a benchmark) and ``StrictHostKeyChecking=yes`` (an unknown
or changed host key stops the run; this tool never trusts a key on first sight). Each ssh failure becomes
one ``BenchError`` line that says what to do. System info is read before and after the run, because a Pi
that heats up or loses voltage during the run changes its clock.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import BenchError
from . import runner, sysinfo
from .local import Progress, frontend_library, run_runner_process

CONNECT_TIMEOUT = 10
_HOST = re.compile(r"^(?:(?P<user>[^@\s]+)@)?(?P<host>\[[^\]]+\]|[^:@\s]+)(?::(?P<port>\d+))?$")


@dataclass(frozen=True)
class Target:
    """``[USER@]HOST[:PORT]``; HOST may be an alias from the ssh config."""

    host: str
    user: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Target:
        if text.strip().startswith("-") or "@-" in text:  # ssh would read it as an option
            raise BenchError(f"--host {text!r}: a host or user may not begin with '-'")
        m = _HOST.match(text.strip())
        if not m:
            raise BenchError(f"--host {text!r}: expected USER@HOST[:PORT]")
        port = int(m["port"]) if m["port"] else None
        if port is not None and not 0 < port < 65536:
            raise BenchError(f"--host {text!r}: port must be 1-65535")
        return cls(m["host"].strip("[]"), m["user"], port)

    @property
    def dest(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    def __str__(self) -> str:
        return self.dest + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class Ssh:
    """Command lines for ssh/scp to one target with the safety options always on."""

    target: Target
    config: Path | None = None
    identity: Path | None = None
    extra: tuple[str, ...] = field(default_factory=tuple)

    def _opts(self) -> list[str]:
        opts = [
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            f"ConnectTimeout={CONNECT_TIMEOUT}",
        ]
        if self.config:
            opts += ["-F", str(self.config)]
        if self.identity:
            opts += ["-i", str(self.identity), "-o", "IdentitiesOnly=yes"]
        return opts + list(self.extra)

    def ssh(self, command: str) -> list[str]:
        port = ["-p", str(self.target.port)] if self.target.port else []
        return ["ssh", *self._opts(), *port, "--", self.target.dest, command]  # "--": never read as an option

    def scp(self, *paths: str) -> list[str]:
        port = ["-P", str(self.target.port)] if self.target.port else []
        return ["scp", "-q", "-r", *self._opts(), *port, "--", *paths]

    def remote(self, path: str) -> str:
        host = f"[{self.target.host}]" if ":" in self.target.host else self.target.host
        return f"{self.target.user + '@' if self.target.user else ''}{host}:{path}"

    def run(self, command: str, stdin: str | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
        return self._call(self.ssh(command), stdin, timeout)

    def copy(self, *paths: str, timeout: float = 600) -> None:
        self._call(self.scp(*paths), None, timeout, check=True)

    def _call(
        self, cmd: list[str], stdin: str | None, timeout: float, check: bool = False
    ) -> subprocess.CompletedProcess:
        try:
            proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=timeout)
        except FileNotFoundError:
            raise BenchError(f"{cmd[0]} not found: install an OpenSSH client") from None
        except subprocess.TimeoutExpired:
            raise BenchError(f"{cmd[0]} to {self.target} timed out after {timeout:.0f} s") from None
        if proc.returncode == 255 or (check and proc.returncode):
            raise ssh_error(proc.stderr, proc.returncode, self.target)
        return proc


def ssh_error(stderr: str, code: int, target: Target) -> BenchError:
    """One line that says what went wrong with the connection and what to do."""
    text = stderr or ""
    where = f"{target.host}:{target.port}" if target.port else target.host
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in text:
        return BenchError(
            f"host key for {where} has CHANGED (reinstalled device or man-in-the-middle): check it, "
            f"then remove the old one with ssh-keygen -R {target.host}"
        )
    if "Host key verification failed" in text or "host key is known" in text:
        return BenchError(f"host key for {where} is not known: add it with ssh-keyscan / ssh once by hand")
    if "Connection refused" in text:
        return BenchError(f"cannot connect to {where}: connection refused (is sshd running on that port?)")
    if "Could not resolve hostname" in text:
        return BenchError(f"cannot resolve host {target.host!r} (check the name or your ssh config)")
    for reason in ("No route to host", "Network is unreachable", "timed out", "Connection reset"):
        if reason.lower() in text.lower():
            return BenchError(f"{where} is unreachable ({reason.lower()})")
    if "Permission denied" in text:
        return BenchError(
            f"ssh login to {target.dest} refused (Permission denied): check the user and that "
            "your key is in the device's authorized_keys (BatchMode: no passwords)"
        )
    last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), f"exit status {code}")
    return BenchError(f"ssh to {target} failed: {last}")


# ------------------------------------------------------------------------------------ the session
def _kv(text: str, key: str) -> str | None:
    m = re.search(rf"^{key}=(.*)$", text, re.M)
    return m.group(1).strip() if m else None


def probe_remote(ssh: Ssh, python: str) -> dict[str, Any]:
    """Run ``runner.py --probe`` from stdin with the device's python: which runtimes import there."""
    proc = ssh.run(f"{shlex.quote(python)} - --probe", stdin=RUNNER_TEXT)
    if proc.returncode == 127 or ("not found" in proc.stderr.lower() and proc.returncode):
        raise BenchError(f"no {python} on {ssh.target}: install python3 there or point --remote-python at one")
    try:
        return json_last_line(proc.stdout)
    except ValueError:
        last = next((ln for ln in reversed(proc.stderr.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        raise BenchError(f"{python} on {ssh.target} could not run the runner probe: {last.strip()}") from None


def json_last_line(text: str) -> dict[str, Any]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise ValueError("no output")
    return json.loads(lines[-1])


RUNNER_TEXT = Path(runner.__file__).read_text()


def check_runtimes(probe: dict[str, Any], requested: list[str] | None, python: str, target: Target) -> list[str]:
    """The runtimes to use on the device, or a one-line error naming what does import there."""
    have = probe.get("runtimes") or {}
    if not probe.get("numpy"):
        raise BenchError(
            f"{python} on {target} cannot import numpy, so no runtime can run (importable runtimes: "
            "none); install numpy and ai-edge-litert there, or pass --remote-python"
        )
    if requested:
        missing = [r for r in requested if r not in have]
        if missing:
            raise BenchError(
                f"runtime(s) {', '.join(missing)} not importable by {python} on {target}; "
                f"importable: {', '.join(have) or 'none'}"
            )
        return requested
    if not have:
        raise BenchError(
            f"no runtime on {target}: {python} imports none of ai_edge_litert, tflite_runtime, "
            "onnxruntime (e.g. pip install ai-edge-litert)"
        )
    return runner.resolve_runtimes("auto", have)


def run_remote(
    target: Target,
    export_dir: Path,
    runtimes: list[str] | None,
    threads: int,
    runs: int,
    warmup: int,
    python: str = "python3",
    ssh_config: Path | None = None,
    identity: Path | None = None,
    progress: Progress | None = None,
    expect_machine: str | None = "aarch64",
) -> dict[str, Any]:
    """The whole remote session; the device's temp dir is removed whatever happens. The device's own facts
    (architecture, CPU, Python, numpy, emulation) come from its python (``runner.device_facts``), while
    ``sysinfo`` (governor, temperature, throttling) is read by the ssh host's shell; a remote interpreter
    whose machine is not ``expect_machine`` is reported in ``warnings``."""
    ssh = Ssh(target, ssh_config, identity)
    template = "/tmp/dssdn-bench." + "X" * 6  # mktemp fills in the Xs
    first = ssh.run("sh -s", stdin=f"d=$(mktemp -d {template}) && echo tmpdir=$d\n" + sysinfo.SCRIPT)
    tmp = _kv(first.stdout, "tmpdir")
    if first.returncode or not tmp:
        raise BenchError(f"cannot create a temp dir on {target}: {first.stderr.strip() or first.stdout.strip()}")
    before = sysinfo.parse(first.stdout)
    try:
        probe = probe_remote(ssh, python)
        chosen = check_runtimes(probe, runtimes, python, target)
        manifest = runner.load_manifest(str(export_dir), verify=False)  # the runner verifies it on the device
        lib, why = frontend_library(manifest["frontend"], str(probe.get("machine") or "") or None)
        with tempfile.TemporaryDirectory(prefix="dssdn-bench-files-") as files:
            ssh.copy(str(export_dir), *runner_files(Path(files), lib), ssh.remote(tmp + "/"))
        name = Path(export_dir).name
        cmd = (
            f"cd {shlex.quote(tmp)} && exec {shlex.quote(python)} runner.py {shlex.quote(name)} "
            f"--runtimes {','.join(chosen)} --threads {threads} --runs {runs} --warmup {warmup} "
            "--out result.json --progress" + (f" --frontend-lib ./{runner.FRONTEND_LIB}" if lib else "")
        )

        def stop(pid: int | None) -> None:
            if pid is not None:
                ssh.run(f"kill -INT {pid}", timeout=30)

        with tempfile.TemporaryDirectory(prefix="dssdn-bench-remote-") as local_tmp:
            fetched = Path(local_tmp) / "result.json"

            def fetch() -> dict[str, Any] | None:
                probe_file = ssh.run(f"test -f {shlex.quote(tmp)}/result.json && echo yes", timeout=60)
                if "yes" not in probe_file.stdout:
                    return None
                ssh.copy(ssh.remote(f"{tmp}/result.json"), str(fetched), timeout=120)
                return json.loads(fetched.read_text())

            result, interrupted = run_runner_process(ssh.ssh(cmd), fetch, progress, on_interrupt=stop)
        if result is None:
            raise BenchError(f"the runner on {target} was interrupted before its first measurement")
        if interrupted:
            result["interrupted"] = True
        after = sysinfo.parse(ssh.run("sh -s", stdin=sysinfo.SCRIPT).stdout)
    finally:
        ssh.run(f"rm -rf {shlex.quote(tmp)}", timeout=60)
    result["sysinfo"] = {"before": before.to_dict(), "after": after.to_dict()}
    device = probe.get("device") or {}
    result["remote"] = {"target": str(target), "python": python, "probe": probe, "device": device,
                        "frontend_lib": {"shipped": lib is not None, "status": why}}
    result.setdefault("warnings", []).extend(device_warnings(device, expect_machine, python, target))
    return result


def runner_files(folder: Path, frontend_lib: Path | None = None) -> list[str]:
    """What the device runs: ``runner.py``, the runtime package (its ``.py`` files) and the C front end built
    for the device (when there is one), staged in ``folder`` under the names the runner uses."""
    from .. import runtime

    staged = folder / runner.DEVICE_RUNTIME_NAME
    staged.mkdir()
    for source in Path(runtime.__file__).parent.glob("*.py"):
        shutil.copyfile(source, staged / source.name)
    files = [str(runner.__file__), str(staged)]
    if frontend_lib is not None:
        shutil.copyfile(frontend_lib, folder / runner.FRONTEND_LIB)
        files.append(str(folder / runner.FRONTEND_LIB))
    return files


def device_warnings(device: dict[str, Any], expect: str | None, python: str, target: Target) -> list[str]:
    """What a reader must know before comparing these numbers with a real device's: a remote interpreter
    of another architecture than the device kind (e.g. an x86 python for --device rpi). Emulation is not a
    warning but the result's mode ("emulated"), shown on every report."""
    out = []
    machine = device.get("machine") or "unknown"
    if expect and machine != expect:
        out.append(
            f"{python} on {target} reports machine {machine}, not {expect}: these are not the numbers of the "
            f"device kind benchmarked (check --remote-python)"
        )
    return out
