"""The front end's C twin cross-compiled for Cortex-M4/M7: measured flash, RAM and stack, run on qemu.

Why build it for real: the microcontroller budget used to add a guessed allowance for the front end's
code. Here ``arm-none-eabi-gcc`` (Debian's ``gcc-arm-none-eabi``) compiles the very sources ``emit_c``
writes, with the flags a board build uses (``-mcpu=cortex-m4 -mfpu=fpv4-sp-d16 -mfloat-abi=hard`` or
``-mcpu=cortex-m7 -mfpu=fpv5-d16``), and:

- **flash and static RAM** come from ``arm-none-eabi-size`` of two linked images that differ only in
  whether they use the front end (``mcu_src/fe_probe.c`` as a streaming device would: init + one hop
  pushed, one frame out). Their difference is the front end with everything it pulls in (tables and
  library code such as ``memcpy``), which the size of its object file alone would miss;
- **stack**: the worst path through the front end's call graph from ``-fstack-usage``
  (``-fcallgraph-info=su``), library calls listed as not counted; and, when the firmware runs on qemu,
  the peak actually used (the stack is painted at reset and the untouched part counted at the end);
- **correctness**: ``mcu_src/fe_firmware.c`` streams real clips (baked into the image) hop by hop on
  ``qemu-system-arm -M mps2-an386`` (Cortex-M4) or ``mps2-an500`` (Cortex-M7) and writes the log-mel frames
  to the host through semihosting, where they are compared with the numpy front end.

qemu is not cycle-accurate, so no timing is taken from it. The TFLM kernels are not built here: the
model's own code stays an allowance in ``bench.mcu`` (its arena is measured by the real TFLM interpreter).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError
from ..frontend import FrontendConfig
from ..frontend_c import CFLAGS, STATIC_SOURCES, TABLES_HEADER, emit_c

MCU_SRC = Path(__file__).resolve().parent / "mcu_src"
CLIPS_HEADER = "dssdn_clips.h"


@dataclass(frozen=True)
class McuTarget:
    """A Cortex-M core: compiler flags of its hard-float ABI and the qemu board that emulates it."""

    key: str
    core: str
    cflags: tuple[str, ...]
    qemu_machine: str


TARGETS: dict[str, McuTarget] = {
    "cortex-m4": McuTarget("cortex-m4", "Cortex-M4F",
                           ("-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"), "mps2-an386"),
    "cortex-m7": McuTarget("cortex-m7", "Cortex-M7 (double-precision FPU, as the STM32H7)",
                           ("-mcpu=cortex-m7", "-mthumb", "-mfpu=fpv5-d16", "-mfloat-abi=hard"), "mps2-an500"),
}


@dataclass
class StackBound:
    """Worst-case stack of the front end's entry points from the compiler's call graph."""

    bytes: int | None  # None: recursion or a dynamic frame without bound
    path: list[str]
    not_counted: list[str]  # callees without stack information (library functions)
    per_entry: dict[str, int | None] = field(default_factory=dict)


@dataclass
class FrontendBuild:
    """Measured footprint of the front end for one core (bytes), with the commands that measured it."""

    target: str
    core: str
    compiler: str
    cflags: list[str]
    object_text: int
    object_data: int
    object_bss: int
    flash_bytes: int  # image with the front end minus image without it: text + data (init values)
    static_ram_bytes: int  # data + bss of that difference: state, one frame, one hop of input
    stack: StackBound
    images: dict[str, dict[str, int]]
    build_dir: str
    stack_peak_bytes: int | None = None  # measured on qemu (whole firmware path, library calls included)
    qemu: dict[str, Any] | None = None
    frontend: dict[str, Any] = field(default_factory=dict)  # the config the tables were generated for
    sources: str = ""
    sources_sha256: dict[str, str] = field(default_factory=dict)  # which C twin was measured

    @property
    def stack_bytes(self) -> int | None:
        """The stack figure a RAM budget should use: the peak measured on qemu when there is one (it
        includes library calls), else the static bound of the front end's own functions."""
        return self.stack_peak_bytes if self.stack_peak_bytes is not None else self.stack.bytes

    @property
    def ram_bytes(self) -> int:
        return self.static_ram_bytes + (self.stack_bytes or 0)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["stack_bytes"] = self.stack_bytes
        out["ram_bytes"] = self.ram_bytes
        return out


def get_target(key: str) -> McuTarget:
    try:
        return TARGETS[key]
    except KeyError:
        raise DeviceError(f"unknown Cortex-M target {key!r}; choose one of {', '.join(TARGETS)}") from None


def toolchain() -> dict[str, str]:
    """Paths of the cross tools, or one error line naming the Debian packages."""
    tools = {}
    for name in ("arm-none-eabi-gcc", "arm-none-eabi-size"):
        path = shutil.which(name)
        if path is None:
            raise DeviceError(f"{name}: not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
        tools[name] = path
    return tools


def _first_error(stderr: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if "error" in ln.lower()]
    return (errors or lines or ["no message"])[0]


def _gcc(cmd: list[str], what: Path, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    if proc.returncode:
        raise DeviceError(f"{what}: arm-none-eabi-gcc failed: {_first_error(proc.stderr)}")


def size_of(size_tool: str, path: Path) -> dict[str, int]:
    """Berkeley ``arm-none-eabi-size``: text (code + read-only data), data, bss."""
    proc = subprocess.run([size_tool, "-B", str(path)], capture_output=True, text=True)
    if proc.returncode:
        raise DeviceError(f"{path}: arm-none-eabi-size failed: {_first_error(proc.stderr)}")
    text, data, bss = (int(v) for v in proc.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


# ------------------------------------------------------------------------------------------ stack
_NODE = re.compile(r'node:\s*\{\s*title:\s*"([^"]+)"\s*label:\s*"([^"]*)"')
_EDGE = re.compile(r'edge:\s*\{\s*sourcename:\s*"([^"]+)"\s*targetname:\s*"([^"]+)"')
_BYTES = re.compile(r"(\d+) bytes \(([^)]*)\)")
ENTRY_POINTS = ("dssdn_frontend_init", "dssdn_frontend_push", "dssdn_frontend_flush", "dssdn_logmel_frame")


def stack_bound(ci_text: str, entries: tuple[str, ...] = ENTRY_POINTS) -> StackBound:
    """Worst-case stack over the call graph GCC wrote with ``-fcallgraph-info=su`` (VCG format)."""
    frames: dict[str, int | None] = {}
    external: set[str] = set()
    for title, label in _NODE.findall(ci_text):
        m = _BYTES.search(label.replace("\\n", "\n"))
        if m is None:
            external.add(title)
        else:
            frames[title] = int(m.group(1)) if m.group(2).startswith(("static", "dynamic,bounded")) else None
    calls: dict[str, list[str]] = {}
    for src, dst in _EDGE.findall(ci_text):
        calls.setdefault(src, []).append(dst)
    not_counted: set[str] = set()

    def worst(fn: str, active: tuple[str, ...]) -> tuple[int | None, list[str]]:
        if fn in active:
            return None, [*active, fn]  # recursion: no bound
        if fn not in frames:
            not_counted.add(fn)
            return 0, []
        own = frames[fn]
        if own is None:
            return None, [fn]
        best, best_path = 0, []
        for callee in calls.get(fn, []):
            n, p = worst(callee, (*active, fn))
            if n is None:
                return None, [fn, *p]
            if n > best:
                best, best_path = n, p
        return own + best, [fn, *best_path]

    per_entry: dict[str, int | None] = {}
    overall: tuple[int | None, list[str]] = (0, [])
    for entry in entries:
        if entry not in frames:
            continue
        n, p = worst(entry, ())
        per_entry[entry] = n
        if n is None or (overall[0] is not None and n > overall[0]):
            overall = (n, p)
            if n is None:
                break
    path = [name.rsplit("/", 1)[-1] for name in overall[1]]  # static functions are titled "file.c:name"
    return StackBound(overall[0], path, sorted(not_counted | (external - set(frames))), per_entry)


# ------------------------------------------------------------------------------------------ build
def _compile(gcc: str, target: McuTarget, src: Path, obj: Path, include: list[Path], extra: tuple[str, ...] = (),
             opt: str = "-O2") -> None:
    flags = [f for f in CFLAGS if not f.startswith("-O")]
    cmd = [gcc, *target.cflags, opt, *flags, "-ffunction-sections", "-fdata-sections", *extra,
           *(f"-I{d}" for d in include), "-c", str(src), "-o", str(obj)]
    _gcc(cmd, src)


def _link(gcc: str, target: McuTarget, objs: list[Path], elf: Path) -> None:
    cmd = [gcc, *target.cflags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
           f"-T{MCU_SRC / 'mps2.ld'}", "-Wl,--gc-sections", *map(str, objs), "-lm", "-o", str(elf)]
    _gcc(cmd, elf)


def config_from_tables(header: Path) -> FrontendConfig:
    """The FrontendConfig a generated ``dssdn_frontend_tables.h`` was rendered for (its header comment)."""
    m = re.search(r"Front-end config: (\{.*\})", header.read_text(encoding="utf-8", errors="replace"))
    if m is None:
        raise DeviceError(f"{header}: no 'Front-end config' line (not generated by dssdn-edge)")
    try:
        return FrontendConfig.from_dict(json.loads(m.group(1)))
    except (ValueError, TypeError) as exc:
        raise DeviceError(f"{header}: unusable front-end config ({exc})") from None


def build_frontend(cfg: FrontendConfig | None, target_key: str, out_dir: Path, opt: str = "-O2",
                   src_dir: Path | None = None) -> FrontendBuild:
    """Compile and measure the front end for ``target_key`` in ``out_dir``: from ``src_dir`` (an export's
    ``mcu/`` or an ``--emit-c`` folder: the sources that ship) when given, else emitted for ``cfg``."""
    target = get_target(target_key)
    tools = toolchain()
    gcc = tools["arm-none-eabi-gcc"]
    out_dir = Path(out_dir).resolve()  # qemu runs in a sub-folder: a relative --out must not follow it there
    src, obj = out_dir / "src", out_dir / "obj"
    if src_dir is not None:
        src.mkdir(parents=True, exist_ok=True)
        for name in (TABLES_HEADER, *STATIC_SOURCES):
            if not (Path(src_dir) / name).is_file():
                raise DeviceError(f"{Path(src_dir) / name}: missing (emit it with dssdn-edge features --emit-c)")
            shutil.copyfile(Path(src_dir) / name, src / name)
        cfg = config_from_tables(src / TABLES_HEADER) if cfg is None else cfg
    elif cfg is None:
        raise DeviceError("build_frontend: give a front-end config or a source folder")
    else:
        emit_c(cfg, src, force=True)
    obj.mkdir(parents=True, exist_ok=True)
    fe_obj = obj / "dssdn_frontend.o"
    _compile(gcc, target, src / "dssdn_frontend.c", fe_obj, [src], ("-fstack-usage", "-fcallgraph-info=su"), opt)
    fe_size = size_of(tools["arm-none-eabi-size"], fe_obj)
    ci = next(iter(sorted(obj.glob("dssdn_frontend*.ci"))), None)
    if ci is None:
        raise DeviceError(f"{obj}: the compiler wrote no call graph (.ci) for the front end")
    stack = stack_bound(ci.read_text())
    common = []
    for name in ("startup.c", "semihost.c"):
        o = obj / name.replace(".c", ".o")
        _compile(gcc, target, MCU_SRC / name, o, [MCU_SRC], (), opt)
        common.append(o)
    images = {}
    for variant, define in (("without", ()), ("with", ("-DDSSDN_WITH_FRONTEND",))):
        probe_obj = obj / f"fe_probe_{variant}.o"
        _compile(gcc, target, MCU_SRC / "fe_probe.c", probe_obj, [MCU_SRC, src], define, opt)
        elf = out_dir / f"fe_probe_{variant}.elf"
        objs = [*common, probe_obj] + ([fe_obj] if variant == "with" else [])
        _link(gcc, target, objs, elf)
        images[variant] = size_of(tools["arm-none-eabi-size"], elf)
    with_, without = images["with"], images["without"]
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return FrontendBuild(
        target=target.key,
        core=target.core,
        compiler=version,
        cflags=[*target.cflags, opt],
        object_text=fe_size["text"],
        object_data=fe_size["data"],
        object_bss=fe_size["bss"],
        flash_bytes=(with_["text"] + with_["data"]) - (without["text"] + without["data"]),
        static_ram_bytes=(with_["data"] + with_["bss"]) - (without["data"] + without["bss"]),
        stack=stack,
        images=images,
        build_dir=str(out_dir),
        frontend=cfg.to_dict(),
        sources=str(src_dir) if src_dir is not None else "emitted by dssdn_edge.frontend_c.emit_c",
        sources_sha256={n: hashlib.sha256((src / n).read_bytes()).hexdigest()
                        for n in (TABLES_HEADER, *STATIC_SOURCES)},
    )


# -------------------------------------------------------------------------------------------- run
def _c_float(v: float) -> str:
    """A float literal that round-trips float32 (9 significant digits) and is a floating constant in C."""
    text = f"{v:.9g}"
    return (text if any(c in text for c in ".e") else text + ".0") + "f"


def tables_take_pcm16(tables_header: Path) -> bool:
    """Whether generated tables were made for int16 PCM samples (an mcu/ project's, ``DSSDN_PCM16 1``)."""
    return re.search(r"#define\s+DSSDN_PCM16\s+1\b", Path(tables_header).read_text(errors="replace")) is not None


def render_clips_header(clips: list[np.ndarray], n_samples: int, pcm16: bool = False) -> str:
    """The clips as one float32 table (each padded or cut to ``n_samples``), exact to the bit; with ``pcm16``
    (a front end that takes int16 PCM) as int16, round(x * 32768), as a 16-bit recording of them holds."""
    rows = []
    for clip in clips:
        x = np.zeros(n_samples, np.float32)
        a = np.asarray(clip, np.float32).ravel()[:n_samples]
        x[: len(a)] = a
        if pcm16:
            body = ",".join(str(int(v)) for v in np.clip(np.round(x.astype(np.float64) * 32768), -32768, 32767))
        else:
            body = ",".join(_c_float(float(v)) for v in x)
        rows.append("    {" + body + "}")
    ctype = "int16_t" if pcm16 else "float"
    return (
        f"/* dssdn_clips.h - GENERATED test audio for fe_firmware.c ({ctype} samples). */\n"
        "#ifndef DSSDN_CLIPS_H\n#define DSSDN_CLIPS_H\n#include <stdint.h>\n"
        f"#define DSSDN_N_CLIPS {len(clips)}\n#define DSSDN_CLIP_SAMPLES {n_samples}\n"
        f"static const {ctype} dssdn_clips[DSSDN_N_CLIPS][DSSDN_CLIP_SAMPLES] = {{\n"
        + ",\n".join(rows)
        + "\n};\n#endif\n"
    )


@dataclass
class QemuRun:
    """Log-mel frames the firmware computed on the emulated core, per clip, and its peak stack."""

    frames: list[np.ndarray]
    stack_peak_bytes: int
    machine: str
    command: list[str]


def qemu_path() -> str:
    path = shutil.which("qemu-system-arm")
    if path is None:
        raise DeviceError("qemu-system-arm: not installed (apt-get install qemu-system-arm)")
    return path


def run_qemu(target: McuTarget, elf: Path, run_dir: Path, timeout: float = 900, icount: bool = True) -> list[str]:
    """Run ``elf`` on the target's board; semihosting files land in ``run_dir``. ``icount`` ties qemu's virtual
    clock to executed instructions (``-icount shift=0``), so a timer the firmware reads counts instructions."""
    clock = ["-icount", "shift=0"] if icount else []
    cmd = [qemu_path(), "-M", target.qemu_machine, "-display", "none", "-monitor", "none", "-serial", "none",
           *clock, "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=run_dir, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise DeviceError(f"{elf}: qemu-system-arm -M {target.qemu_machine} ran over {timeout:.0f} s") from None
    if proc.returncode:
        msg = (proc.stderr + proc.stdout).strip().splitlines()
        raise DeviceError(f"{elf}: firmware failed on qemu -M {target.qemu_machine} (exit {proc.returncode}: "
                          f"{msg[0] if msg else 'no message'})")
    return cmd


def run_on_qemu(build: FrontendBuild, cfg: FrontendConfig | None, clips: list[np.ndarray],
                timeout: float = 300) -> QemuRun:
    """Bake ``clips`` (mono float32 at the config's rate, all of one length) into the firmware, run it on
    the target's qemu board, read back the frames; the build's ``stack_peak_bytes`` is filled in."""
    if not clips:
        raise DeviceError("run_on_qemu: no clips to run")
    cfg = cfg or FrontendConfig.from_dict(build.frontend)
    qemu_path()
    target = get_target(build.target)
    gcc = toolchain()["arm-none-eabi-gcc"]
    out_dir = Path(build.build_dir)
    src, obj, run_dir = out_dir / "src", out_dir / "obj", out_dir / "run"
    n_samples = max(len(np.asarray(c).ravel()) for c in clips)
    (src / CLIPS_HEADER).write_text(render_clips_header(clips, n_samples, tables_take_pcm16(src / TABLES_HEADER)))
    fw_obj = obj / "fe_firmware.o"
    _compile(gcc, target, MCU_SRC / "fe_firmware.c", fw_obj, [MCU_SRC, src], (), build.cflags[-1])
    elf = out_dir / "fe_firmware.elf"
    _link(gcc, target, [obj / "startup.o", obj / "semihost.o", fw_obj, obj / "dssdn_frontend.o"], elf)
    cmd = run_qemu(target, elf, run_dir, timeout, icount=False)
    raw = np.fromfile(run_dir / "features.f32", dtype="<f4")
    per_clip = 1 + n_samples // cfg.hop_length
    if raw.size != len(clips) * per_clip * cfg.n_mels:
        raise DeviceError(f"{run_dir / 'features.f32'}: {raw.size} values, expected "
                          f"{len(clips)} clips x {per_clip} frames x {cfg.n_mels} bands")
    frames = list(raw.reshape(len(clips), per_clip, cfg.n_mels))
    peak = int((run_dir / "stack.txt").read_text().split()[0])
    build.stack_peak_bytes = peak
    build.qemu = {"machine": target.qemu_machine, "command": cmd, "clips": len(clips), "samples": n_samples}
    return QemuRun(frames, peak, target.qemu_machine, cmd)


def max_error_within(ref: np.ndarray, got: np.ndarray, within: float) -> float:
    """max |got - ref| over the values at most ``within`` log10 units below their frame's loudest band (the
    float32 bound tests/test_frontend_c.py holds the host build to)."""
    considered = ref >= ref.max(axis=1, keepdims=True) - within
    return float(np.abs(got - ref)[considered].max())
