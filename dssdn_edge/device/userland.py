"""Build a Raspberry Pi OS-like aarch64 userland from Debian's own packages, once, into a cache folder.

Why Debian bookworm arm64: Raspberry Pi OS Bookworm is built from it, so its ``python3.11`` (3.11.2) and
``python3-numpy`` (1.24.2) are the very versions a Pi user's ``apt install`` gives. ``qemu-aarch64-static``
runs them on this host without docker, binfmt_misc or root: the host's dpkg is never touched (a private
APT configuration with ``APT::Architecture "arm64"`` and an empty dpkg status only *downloads*; each .deb
is unpacked with ``dpkg -x``). The runtimes a Pi user pip-installs come as aarch64 wheels from
``pip download`` and are unpacked, one folder each, so each interpreter wrapper sees exactly one.

The result is verified, not trusted: ``userland.json`` records every .deb and wheel with its SHA-256 and
the SHA-256 of the built tree, a build happens in a ``.partial`` folder renamed into place only when it
is complete, and on reuse the tree hash is recomputed, so a folder left half-built or modified by an
interrupted run is detected and rebuilt instead of giving confusing failures later.

Pitfalls this module handles (each found by trying): ``dpkg -x`` does not run maintainer scripts, so the
``libblas.so.3``/``liblapack.so.3`` alternatives symlinks that numpy needs are made here; ``libstdc++6``
must be named (the runtimes' wheels need it, no Debian package pulls it in); and the tree is
byte-compiled once here, since starting an interpreter under emulation otherwise compiles the standard
library each time (more than 10 s).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..checkpoint import sha256_file
from ..errors import ArchiveUnreachable, DeviceError

FORMAT = 1
STAMP = "userland.json"
DEBIAN_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
Log = Callable[[str], None]


@dataclass(frozen=True)
class UserlandSpec:
    """Everything that decides the bytes of the userland; its hash names the cache folder."""

    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"
    security_mirror: str = "http://deb.debian.org/debian-security"
    arch: str = "arm64"
    triplet: str = "aarch64-linux-gnu"
    python: str = "python3.11"
    # base-files: /etc/os-release, so the device names its own OS; libstdc++6: needed by both runtimes.
    packages: tuple[str, ...] = ("python3.11", "python3-numpy", "libstdc++6", "base-files")
    # runtime name (as the bench runner knows it) -> pip requirement of its aarch64 wheel
    wheels: tuple[tuple[str, str], ...] = (
        ("tflite-runtime", "tflite-runtime==2.14.0"),
        ("litert", "ai-edge-litert==2.3.0"),
    )
    python_version: str = "3.11"
    # tflite-runtime 2.14 is tagged manylinux_2_34, ai-edge-litert 2.3 manylinux_2_27; bookworm has glibc 2.36
    wheel_platforms: tuple[str, ...] = (
        "manylinux_2_36_aarch64",
        "manylinux_2_34_aarch64",
        "manylinux_2_28_aarch64",
        "manylinux_2_27_aarch64",
        "manylinux2014_aarch64",
    )

    @classmethod
    def from_env(cls) -> UserlandSpec:
        """The default spec; ``DSSDN_DEBIAN_MIRROR`` points at another Debian mirror (e.g. a local one)."""
        mirror = os.environ.get("DSSDN_DEBIAN_MIRROR")
        return cls(mirror=mirror) if mirror else cls()

    @property
    def runtimes(self) -> list[str]:
        return [name for name, _ in self.wheels]

    def key(self) -> str:
        """Folder name: what is built (not where from: a mirror serves the same packages)."""
        content = {k: v for k, v in asdict(self).items() if k not in ("mirror", "security_mirror")}
        digest = hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]
        return f"pi-userland-{self.suite}-{self.arch}-{digest}"


@dataclass
class Userland:
    """A built, verified userland: ``root`` (the sysroot) and ``site/<runtime>`` (one wheel each)."""

    path: Path
    stamp: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.path / "root"

    def site(self, runtime: str) -> Path:
        return self.path / "site" / runtime

    @property
    def python(self) -> str:
        return str(self.stamp["python"])

    @property
    def tree_sha256(self) -> str:
        return str(self.stamp["tree_sha256"])


# ------------------------------------------------------------------------------------------ tools
def default_cache() -> Path:
    """``$DSSDN_CACHE`` or the user's cache folder (``paths.cache_dir``), never under the package."""
    from ..paths import cache_dir

    return cache_dir()


def require_tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise DeviceError(f"{name}: not installed (apt-get install {package})")
    return path


def qemu_version(qemu: str) -> str:
    proc = subprocess.run([qemu, "--version"], capture_output=True, text=True)
    words = proc.stdout.split()
    return words[2] if len(words) > 2 and words[1] == "version" else (proc.stdout.strip() or "unknown")


def _run(cmd: list[str], what: str, env: dict[str, str] | None = None, timeout: float = 900) -> str:
    """Run a build step; a failure becomes one line with the tool's last error line."""
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{what}: timed out after {timeout:.0f} s") from None
    if proc.returncode:
        lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith(("E:", "ERROR", "error"))]
        raise DeviceError(f"{what}: {(errors or lines or [f'exit {proc.returncode}'])[-1]}")
    return proc.stdout


def tree_sha256(*dirs: Path) -> str:
    """One hash over every path, symlink target and file content under ``dirs`` (byte code excluded: it is
    derived, and the interpreter re-validates it against the sources anyway)."""
    h = hashlib.sha256()
    for top in dirs:
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            for d in dirnames:
                p = Path(dirpath, d)
                if p.is_symlink():
                    h.update(f"L {p.relative_to(top.parent)} {os.readlink(p)}\n".encode())
            for name in sorted(filenames):
                p = Path(dirpath, name)
                rel = p.relative_to(top.parent)
                if p.is_symlink():
                    h.update(f"L {rel} {os.readlink(p)}\n".encode())
                else:
                    h.update(f"F {rel} {sha256_file(p)}\n".encode())
    return h.hexdigest()


# ---------------------------------------------------------------------------------------- the apt
def _apt_env(apt_dir: Path, spec: UserlandSpec) -> dict[str, str]:
    """A private APT configuration: arm64 only, its own lists, cache and an empty dpkg status."""
    for sub in ("lists/partial", "archives/partial", "etc/sources.list.d", "etc/preferences.d"):
        (apt_dir / sub).mkdir(parents=True, exist_ok=True)
    (apt_dir / "status").write_text("")
    signed = f"arch={spec.arch} signed-by={DEBIAN_KEYRING}"
    (apt_dir / "etc" / "sources.list").write_text(
        f"deb [{signed}] {spec.mirror} {spec.suite} main\n"
        f"deb [{signed}] {spec.mirror} {spec.suite}-updates main\n"
        f"deb [{signed}] {spec.security_mirror} {spec.suite}-security main\n"
    )
    conf = apt_dir / "apt.conf"
    conf.write_text(
        f'APT::Architecture "{spec.arch}";\nAPT::Architectures {{ "{spec.arch}"; }};\n'
        f'Dir::State "{apt_dir}";\nDir::State::Lists "{apt_dir / "lists"}";\n'
        f'Dir::State::status "{apt_dir / "status"}";\nDir::Cache "{apt_dir}";\n'
        f'Dir::Cache::archives "{apt_dir / "archives"}";\nDir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
        f'Dir::Etc::sourcelist "{apt_dir / "etc" / "sources.list"}";\n'
        f'Dir::Etc::sourceparts "{apt_dir / "etc" / "sources.list.d"}";\n'
        f'Dir::Etc::preferencesparts "{apt_dir / "etc" / "preferences.d"}";\n'
        'APT::Install-Recommends "false";\nAPT::Sandbox::User "root";\nDebug::NoLocking "true";\n'
        'Acquire::Retries "2";\nAcquire::http::Timeout "30";\n'
    )
    env = dict(os.environ, APT_CONFIG=str(conf), DEBIAN_FRONTEND="noninteractive", LC_ALL="C")
    return env


def download_debs(spec: UserlandSpec, apt_dir: Path, log: Log) -> list[Path]:
    """The .debs of ``spec.packages`` and their dependencies for arm64 (the host's dpkg is not touched)."""
    apt_get = require_tool("apt-get", "apt")
    if not Path(DEBIAN_KEYRING).is_file():
        raise DeviceError(f"{DEBIAN_KEYRING}: missing (apt-get install debian-archive-keyring)")
    env = _apt_env(apt_dir, spec)
    log(f"apt-get update ({spec.suite} {spec.arch} from {spec.mirror})")
    proc = subprocess.run([apt_get, "-q", "update"], capture_output=True, text=True, env=env, timeout=900)
    failed = [ln for ln in (proc.stdout + proc.stderr).splitlines() if ln.startswith(("E:", "W: Failed", "Err:"))]
    if proc.returncode or failed:
        last = failed[-1] if failed else (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        raise ArchiveUnreachable(f"{spec.mirror}: Debian archive unreachable (apt-get update: {last.strip()})")
    log(f"apt-get install --download-only {' '.join(spec.packages)}")
    _run([apt_get, "-q", "-y", "install", "--download-only", *spec.packages], "apt-get --download-only", env)
    debs = sorted((apt_dir / "archives").glob("*.deb"))
    if not debs:
        raise DeviceError(f"{apt_dir / 'archives'}: apt-get downloaded no .deb")
    return debs


def deb_record(deb: Path) -> dict[str, str]:
    fields = _run(["dpkg-deb", "-f", str(deb), "Package", "Version", "Architecture"], f"{deb}: dpkg-deb -f")
    info = dict(line.split(": ", 1) for line in fields.splitlines() if ": " in line)
    return {"package": info.get("Package", ""), "version": info.get("Version", ""),
            "arch": info.get("Architecture", ""), "file": deb.name, "sha256": sha256_file(deb)}


def unpack_debs(debs: list[Path], root: Path, log: Log) -> None:
    require_tool("dpkg", "dpkg")
    log(f"dpkg -x {len(debs)} packages")
    root.mkdir(parents=True, exist_ok=True)
    for deb in debs:
        _run(["dpkg", "-x", str(deb), str(root)], f"{deb.name}: dpkg -x")


def fix_alternatives(root: Path, triplet: str) -> list[str]:
    """Make the symlinks update-alternatives would (``dpkg -x`` runs no maintainer scripts): for every
    ``usr/lib/<triplet>/<name>/libX.so.N`` in an alternatives folder (blas, lapack), ``libX.so.N`` beside it."""
    made = []
    libdir = root / "usr" / "lib" / triplet
    for sub in ("blas", "lapack", "openblas-pthread", "atlas"):
        for lib in sorted((libdir / sub).glob("lib*.so.[0-9]")) if (libdir / sub).is_dir() else []:
            link = libdir / lib.name
            if not link.exists() and not link.is_symlink():
                link.symlink_to(f"{sub}/{lib.name}")
                made.append(f"{link.relative_to(root)} -> {sub}/{lib.name}")
    return made


# ---------------------------------------------------------------------------------------- wheels
def download_wheel(spec: UserlandSpec, requirement: str, dest: Path) -> Path:
    """One aarch64 wheel (no dependencies: numpy is Debian's, as on a Pi) with pip's ordinary client."""
    dest.mkdir(parents=True, exist_ok=True)
    before = set(dest.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--implementation", "cp", "--python-version", spec.python_version, "-d", str(dest)]
    for plat in spec.wheel_platforms:
        cmd += ["--platform", plat]
    proc = subprocess.run([*cmd, requirement], capture_output=True, text=True, timeout=900)
    if proc.returncode:
        text = proc.stderr + proc.stdout
        last = next((ln.strip() for ln in reversed(text.splitlines()) if ln.strip()), f"exit {proc.returncode}")
        if any(s in text for s in ("NewConnectionError", "Max retries exceeded", "Temporary failure in name")):
            raise ArchiveUnreachable(f"{requirement}: package index unreachable (pip download: {last})")
        raise DeviceError(f"{requirement}: pip download failed: {last}")
    name = requirement.split("==")[0].replace("-", "_").lower()
    found = [w for w in dest.glob("*.whl") if w.name.lower().startswith(name + "-")]
    if not found:
        new = sorted(w.name for w in set(dest.glob("*.whl")) - before)
        raise DeviceError(f"{requirement}: pip download left no matching wheel in {dest} (new: {new})")
    return sorted(found)[-1]


def unpack_wheel(wheel: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            out = zf.extract(info, target)
            mode = info.external_attr >> 16
            if mode & 0o111:
                os.chmod(out, mode & 0o777)


# ------------------------------------------------------------------------------------------ build
def device_python_cmd(qemu: str, cpu: str, prefix: Path, python: str) -> list[str]:
    """The command line that starts the userland's interpreter under user-mode emulation."""
    return [qemu, "-cpu", cpu, "-L", str(prefix), str(prefix / "usr" / "bin" / python)]


def _versions(cmd: list[str], site: Path | None, module: str | None) -> dict[str, str]:
    code = (
        "import json, platform, numpy\n"
        "out = {'python': platform.python_version(), 'machine': platform.machine(), 'numpy': numpy.__version__}\n"
    )
    if module:
        code += (
            f"import importlib; m = importlib.import_module({module!r})\n"
            "from importlib.metadata import version, packages_distributions\n"
            f"out['runtime'] = version(packages_distributions()[{module.split('.')[0]!r}][0])\n"
        )
    code += "print(json.dumps(out))\n"
    env = dict(os.environ, PYTHONNOUSERSITE="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONHOME", None)
    env["PYTHONPATH"] = str(site) if site else ""
    out = _run([*cmd, "-c", code], f"smoke test of the userland ({module or 'numpy'})", env, timeout=300)
    return json.loads(out.strip().splitlines()[-1])


RUNTIME_MODULES = {"tflite-runtime": "tflite_runtime.interpreter", "litert": "ai_edge_litert.interpreter"}


def build(spec: UserlandSpec, final: Path, downloads: Path, log: Log) -> Userland:
    """Build into ``final.partial`` and rename it to ``final`` when complete and checked."""
    qemu = require_tool("qemu-aarch64-static", "qemu-user-static")
    staging = final.with_name(final.name + ".partial")
    if staging.exists():
        log(f"{staging}: removing a half-built folder left by an interrupted run")
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    try:
        return _build_into(spec, staging, final, downloads, qemu, log)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # nothing half-built is left behind by a failed build
        raise


def _build_into(spec: UserlandSpec, staging: Path, final: Path, downloads: Path, qemu: str, log: Log) -> Userland:
    t0 = time.monotonic()
    debs = download_debs(spec, downloads / "apt", log)
    records = [deb_record(d) for d in debs]
    root = staging / "root"
    unpack_debs(debs, root, log)
    links = fix_alternatives(root, spec.triplet)
    python_bin = root / "usr" / "bin" / spec.python
    if not python_bin.is_file():
        raise DeviceError(f"{python_bin}: not in the unpacked packages")
    wheels = []
    for runtime, requirement in spec.wheels:
        log(f"pip download {requirement} (aarch64)")
        wheel = download_wheel(spec, requirement, downloads / "wheels")
        unpack_wheel(wheel, staging / "site" / runtime)
        wheels.append({"runtime": runtime, "requirement": requirement, "file": wheel.name,
                       "sha256": sha256_file(wheel)})
    # The build CPU only matters for running the compiler; any Cortex-A core runs this userland.
    cmd = device_python_cmd(qemu, "cortex-a72", root, spec.python)
    log("byte-compiling the userland under emulation (once; saves > 10 s per interpreter start)")
    targets = [root / "usr" / "lib" / spec.python, root / "usr" / "lib" / "python3" / "dist-packages",
               staging / "site"]
    env = dict(os.environ, PYTHONNOUSERSITE="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    _run([*cmd, "-m", "compileall", "-q", "-j", "1", "-s", str(staging), "-p", str(final),
          *map(str, targets)], "compileall under emulation", env, timeout=1800)
    numpy_versions = _versions(cmd, None, None)
    runtime_versions = {r: _versions(cmd, staging / "site" / r, RUNTIME_MODULES[r])["runtime"]
                        for r in spec.runtimes}
    if numpy_versions.get("machine") != "aarch64":
        raise DeviceError(f"{python_bin}: reports machine {numpy_versions.get('machine')!r}, not aarch64")
    stamp = {
        "format": FORMAT,
        "spec": asdict(spec),
        "python": spec.python,
        "debs": records,
        "wheels": wheels,
        "alternatives_links": links,
        "versions": {**numpy_versions, "runtimes": runtime_versions},
        "qemu": {"path": qemu, "version": qemu_version(qemu)},
        "build_seconds": round(time.monotonic() - t0, 1),
        "tree_sha256": tree_sha256(root, staging / "site"),
    }
    (staging / STAMP).write_text(json.dumps(stamp, indent=1) + "\n")
    if final.exists():  # an older or broken build at the final name: replace it
        shutil.rmtree(final)
    os.replace(staging, final)
    log(f"built {final} in {stamp['build_seconds']:.0f} s (tree sha256 {stamp['tree_sha256'][:12]}…)")
    return Userland(final, stamp)


def check(path: Path) -> str | None:
    """None when ``path`` holds a complete userland whose tree still hashes as recorded; else why not."""
    stamp_file = path / STAMP
    if not stamp_file.is_file():
        return "no userland.json (half-built: an interrupted build)"
    try:
        stamp = json.loads(stamp_file.read_text())
    except ValueError as exc:
        return f"unreadable userland.json ({exc})"
    if stamp.get("format") != FORMAT or "tree_sha256" not in stamp:
        return "userland.json of another format"
    if not (path / "root").is_dir() or not (path / "site").is_dir():
        return "root/ or site/ missing"
    digest = tree_sha256(path / "root", path / "site")
    if digest != stamp["tree_sha256"]:
        recorded = str(stamp["tree_sha256"])[:12]
        return f"tree sha256 {digest[:12]}… differs from the recorded {recorded}… (modified or half-built)"
    return None


_VERIFIED: dict[str, str] = {}  # folders hashed by this process: verified once, not on every call


def ensure_userland(spec: UserlandSpec | None = None, cache: Path | None = None, log: Log | None = None) -> Userland:
    """The verified userland for ``spec`` in ``cache`` (built when missing, rebuilt when broken)."""
    spec = spec or UserlandSpec.from_env()
    cache = Path(cache) if cache is not None else default_cache()
    log = log or (lambda msg: None)
    final = cache / spec.key()
    if str(final) in _VERIFIED and (final / STAMP).is_file():
        stamp = json.loads((final / STAMP).read_text())
        if stamp.get("tree_sha256") == _VERIFIED[str(final)]:
            return Userland(final, stamp)
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"{spec.key()}.lock", "w") as lock:  # one builder at a time (parallel test workers)
        fcntl.flock(lock, fcntl.LOCK_EX)
        if final.exists():
            why = check(final)
            if why is None:
                stamp = json.loads((final / STAMP).read_text())
                _VERIFIED[str(final)] = stamp["tree_sha256"]
                return Userland(final, stamp)
            log(f"{final}: {why}; rebuilding")
        return build(spec, final, cache / "downloads", log)
