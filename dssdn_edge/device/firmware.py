"""The whole model on a Cortex-M4/M7: an export's ``mcu/`` folder linked into firmware, measured and run on qemu.

Why a module apart from ``cortex_m`` (the front end alone): here the unit is the project an embedded engineer
builds, ``mcu/`` with the classifier glue, the front end and the generated model, and three things are
taken from real builds and runs rather than allowed for:

- **footprint**: ``mcu_src/probe_firmware.c`` uses the classifier as a device would; its linker map gives
  every input section's size per object file, summed into the model (generated model + kernels), the
  front end (``dssdn_frontend``, ``dssdn_features``, the stored normalisation) and the glue/runtime
  (classifier, startup, C library). Flash = text + rodata + data's initial values; RAM = data + bss + the
  peak stack painted at reset and measured on qemu;
- **instructions**: under ``qemu-system-arm -icount shift=0`` each instruction advances the virtual clock by
  1 ns, and the MPS2 FPGA counter the firmware reads (25 MHz) ticks every 40 of them. ``calibrate`` proves it
  on loops of known length. These are EMULATED INSTRUCTIONS, not time: qemu is not cycle-accurate;
- **labels**: ``mcu_src/classify_firmware.c`` streams real clips (int16 PCM in flash, trailing digital
  silence stored as a length) through the classifier and returns each window's int8 input and scores, so
  the host can hold them against TFLite Micro and ``dssdn-edge predict``. Flash on the mps2 boards is
  4 MB: clips are split over several images when needed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DeviceError
from .cortex_m import MCU_SRC, McuTarget, get_target, run_qemu, size_of, toolchain

HOST_MAIN = "classify.c"
MODEL_HEADER = "dssdn_model.h"
FRONTEND_OBJECTS = ("dssdn_frontend", "dssdn_features")
FRONTEND_SYMBOLS = ("dssdn_input_params",)  # the stored normalisation, compiled into the classifier's unit
GLUE_OBJECTS = ("dssdn_classifier",)
COUNTER_HZ = 25_000_000  # the MPS2 FPGA counter
NS_PER_INSTRUCTION = 1  # qemu -icount shift=0
INSTRUCTIONS_PER_TICK = 1_000_000_000 // COUNTER_HZ // NS_PER_INSTRUCTION
CLIP_FLASH_BYTES = 3 * 1024 * 1024  # per image, beside the model, within the boards' 4 MB code memory
WINDOW_KIND, CLIP_KIND, END_KIND = 1, 2, 3
FIRMWARE_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-ffp-contract=off", "-ffunction-sections", "-fdata-sections")
INSTALL_HINT = "apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"


# ------------------------------------------------------------------------------------------ sources
def model_header(mcu_dir: Path) -> dict[str, Any]:
    """The numbers of the generated ``dssdn_model.h`` the firmware is built from (name, sizes, arena)."""
    path = Path(mcu_dir) / MODEL_HEADER
    if not path.is_file():
        raise DeviceError(f"{path}: missing (export with --int8 writes the generated model into mcu/)")
    text = path.read_text(encoding="utf-8", errors="replace")
    defines = dict(re.findall(r"#define\s+DSSDN_MODEL_(\w+)\s+([^\s/]+)", text))
    try:
        out: dict[str, Any] = {k.lower(): int(defines[k]) for k in ("IN_FRAMES", "IN_BANDS", "IN_CHANNELS",
                                                                   "OUT_CLASSES", "ARENA_BYTES")}
    except (KeyError, ValueError):
        raise DeviceError(f"{path}: not a dssdn-edge generated model header (DSSDN_MODEL_* sizes missing)") from None
    name = re.search(r'#define\s+DSSDN_MODEL_NAME\s+"([^"]*)"', text)
    out["name"] = name.group(1) if name else ""
    out["in_bytes"] = out["in_frames"] * out["in_bands"] * out["in_channels"]
    return out


def library_sources(mcu_dir: Path) -> list[Path]:
    """Every C file of the project except the host program: what ``make cortex-m4`` puts in libdssdn.a."""
    srcs = sorted(p for p in Path(mcu_dir).glob("*.c") if p.name != HOST_MAIN)
    if not srcs:
        raise DeviceError(f"{mcu_dir}: no C sources (not an export's mcu/ folder)")
    return srcs


# -------------------------------------------------------------------------------------------- build
@dataclass
class Builder:
    """Compiles an ``mcu/`` folder for one core into ``out_dir`` once; links firmware images from it."""

    mcu_dir: Path
    target: McuTarget
    out_dir: Path
    opt: str = "-O2"
    objects: list[Path] = field(default_factory=list)
    support: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.mcu_dir, self.out_dir = Path(self.mcu_dir).resolve(), Path(self.out_dir).resolve()
        self.gcc = toolchain()["arm-none-eabi-gcc"]
        self.size_tool = toolchain()["arm-none-eabi-size"]
        self.obj_dir = self.out_dir / "obj"

    def cc(self, src: Path, obj: Path, extra: tuple[str, ...] = ()) -> Path:
        obj.parent.mkdir(parents=True, exist_ok=True)
        cmd = [self.gcc, *self.target.cflags, self.opt, *FIRMWARE_FLAGS, *extra, f"-I{self.mcu_dir}",
               f"-I{MCU_SRC}", "-c", str(src), "-o", str(obj)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            lines = [ln.strip() for ln in proc.stderr.splitlines() if "error" in ln.lower()] or \
                [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()] or ["no message"]
            raise DeviceError(f"{src}: arm-none-eabi-gcc failed: {lines[0]}")
        return obj

    def compile_project(self, hooks: bool) -> list[Path]:
        """The project's objects (each compiled once per builder); with ``hooks`` the classifier gets the
        firmware's test hooks (``mcu_src/fw_hooks.h``), everything else is the same object."""
        objs = []
        for src in library_sources(self.mcu_dir):
            hooked = hooks and src.stem in GLUE_OBJECTS
            obj = self.obj_dir / ("hooked" if hooked else "plain") / f"{src.stem}.o"
            if not obj.is_file():
                self.cc(src, obj, ("-include", str(MCU_SRC / "fw_hooks.h")) if hooked else ())
            objs.append(obj)
        return objs

    def runtime(self) -> list[Path]:
        if not self.support:
            self.support = [self.cc(MCU_SRC / n, self.obj_dir / "rt" / n.replace(".c", ".o"))
                            for n in ("startup.c", "semihost.c")]
        return self.support

    def link(self, objs: list[Path], elf: Path) -> Path:
        cmd = [self.gcc, *self.target.cflags, "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
               f"-T{MCU_SRC / 'mps2.ld'}", "-Wl,--gc-sections", f"-Wl,-Map={elf.with_suffix('.map')}",
               *map(str, objs), "-lm", "-o", str(elf)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            first = next((ln.strip() for ln in proc.stderr.splitlines() if ln.strip()), "no message")
            raise DeviceError(f"{elf}: arm-none-eabi-gcc (link) failed: {first}")
        return elf


# ----------------------------------------------------------------------------------------- footprint
_OUT_SECTION = re.compile(r"^(\.[\w.]+)\s")
_IN_SECTION = re.compile(r"^ (\.[\w.$]+|COMMON)\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")
_IN_NAME_ONLY = re.compile(r"^ (\.[\w.$]+|COMMON)\s*$")
_IN_REST = re.compile(r"^\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S.*)$")


def placed_sections(map_text: str) -> list[tuple[str, str, int, int, str]]:
    """(output section, input section, address, size, object) of every placed input section of a GNU ld map.

    The size is what the section occupies in the image: a mergeable string section whose strings ld folded
    into another one is listed with its input size at the address of the next section, so a size is cut to
    the distance to the next section of the same output section."""
    start = map_text.find("Linker script and memory map")
    found: list[tuple[str, str, int, int, str]] = []  # output, input, address, size, object
    current, pending = "", None
    for line in map_text[start:].splitlines():
        m = _OUT_SECTION.match(line)
        if m:
            current, pending = m.group(1), None
            continue
        m = _IN_SECTION.match(line)
        if m:
            found.append((current, m.group(1), int(m.group(2), 16), int(m.group(3), 16), m.group(4).strip()))
            pending = None
            continue
        m = _IN_NAME_ONLY.match(line)
        if m:
            pending = m.group(1)
            continue
        m = _IN_REST.match(line)
        if m and pending is not None:
            found.append((current, pending, int(m.group(1), 16), int(m.group(2), 16), m.group(3).strip()))
        pending = None
    out: list[tuple[str, str, int, int, str]] = []
    for k, (out_sec, in_sec, addr, size, obj) in enumerate(found):
        nxt = found[k + 1] if k + 1 < len(found) else None
        if nxt is not None and nxt[0] == out_sec and size and addr <= nxt[2] < addr + size:
            size = nxt[2] - addr
        out.append((out_sec, in_sec, addr, size, obj))
    return out


def map_sections(map_text: str) -> list[tuple[str, str, int, str]]:
    """(output section, input section, size, object): ``placed_sections`` without the addresses."""
    return [(out_sec, in_sec, size, obj) for out_sec, in_sec, _, size, obj in placed_sections(map_text)]


def _part(obj: str, section: str, model_objects: set[str]) -> str:
    stem = Path(obj.split("(")[0]).stem if "(" not in obj else ""
    if any(section.endswith("." + s) for s in FRONTEND_SYMBOLS) or stem in FRONTEND_OBJECTS:
        return "frontend"
    if stem in model_objects:
        return "model"
    return "glue"


def split_footprint(map_text: str, model_objects: set[str]) -> dict[str, dict[str, int]]:
    """Bytes per part (model, frontend, glue) and kind (text, rodata, data, bss) from the linker map."""
    parts = {p: {"text": 0, "rodata": 0, "data": 0, "bss": 0} for p in ("model", "frontend", "glue")}
    for out_sec, in_sec, size, obj in map_sections(map_text):
        if out_sec in (".heap", ".stack") or size == 0:
            continue
        if out_sec == ".bss":
            kind = "bss"
        elif out_sec == ".data":
            kind = "data"
        elif in_sec.startswith(".rodata") or out_sec in (".ARM.exidx",):
            kind = "rodata"
        elif out_sec in (".text", ".init_array", ".fini_array", ".preinit_array"):
            kind = "text"
        else:
            continue
        parts[_part(obj, in_sec, model_objects)][kind] += size
    return parts


@dataclass
class Footprint:
    """Measured flash and RAM of the whole firmware on one core (bytes), split by part."""

    target: str
    core: str
    compiler: str
    cflags: list[str]
    parts: dict[str, dict[str, int]]  # model / frontend / glue -> text, rodata, data, bss
    image: dict[str, int]  # arm-none-eabi-size of the probe image
    arena_bytes: int  # DSSDN_MODEL_ARENA_BYTES of the generated model (inside the model's bss)
    stack_peak_bytes: int | None = None  # painted, measured on qemu over the whole classify path

    def flash(self, part: str | None = None) -> int:
        ps = [part] if part else list(self.parts)
        return sum(self.parts[p]["text"] + self.parts[p]["rodata"] + self.parts[p]["data"] for p in ps)

    def static_ram(self, part: str | None = None) -> int:
        ps = [part] if part else list(self.parts)
        return sum(self.parts[p]["data"] + self.parts[p]["bss"] for p in ps)

    @property
    def ram_bytes(self) -> int:
        return self.static_ram() + (self.stack_peak_bytes or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["flash_bytes"] = self.flash()
        d["ram_bytes"] = self.ram_bytes
        d["flash_by_part"] = {p: self.flash(p) for p in self.parts}
        d["ram_by_part"] = {**{p: self.static_ram(p) for p in self.parts}, "stack": self.stack_peak_bytes}
        return d


def model_objects(mcu_dir: Path) -> set[str]:
    return {p.stem for p in library_sources(mcu_dir)} - set(FRONTEND_OBJECTS) - set(GLUE_OBJECTS)


def struct_sizes(builder: Builder) -> dict[str, int]:
    """sizeof the state structs on this core (``mcu_src/struct_sizes.c``, read with ``nm -S``)."""
    obj = builder.cc(MCU_SRC / "struct_sizes.c", builder.obj_dir / "struct_sizes.o", ("-fno-common",))
    nm = shutil.which("arm-none-eabi-nm")
    if nm is None:
        raise DeviceError(f"arm-none-eabi-nm: not installed ({INSTALL_HINT})")
    proc = subprocess.run([nm, "-S", str(obj)], capture_output=True, text=True)
    sizes = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[3].startswith("dssdn_sizeof_"):
            sizes[parts[3]] = int(parts[1], 16)
    if len(sizes) != 2:
        raise DeviceError(f"{obj}: arm-none-eabi-nm did not list the struct sizes")
    return sizes


def measure_footprint(builder: Builder) -> Footprint:
    """Link ``probe_firmware.c`` with the project and split its map (see the module docstring)."""
    objs = builder.compile_project(hooks=False)
    probe = builder.cc(MCU_SRC / "probe_firmware.c", builder.obj_dir / "probe_firmware.o")
    elf = builder.link([*builder.runtime(), probe, *objs], builder.out_dir / "probe.elf")
    parts = split_footprint(elf.with_suffix(".map").read_text(), model_objects(builder.mcu_dir))
    # the probe's static classifier holds the front end's state: move that share from glue to front end
    features = struct_sizes(builder)["dssdn_sizeof_features"]
    parts["glue"]["bss"] -= features
    parts["frontend"]["bss"] += features
    version = subprocess.run([builder.gcc, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    return Footprint(builder.target.key, builder.target.core, version, [*builder.target.cflags, builder.opt],
                     parts, size_of(builder.size_tool, elf), model_header(builder.mcu_dir)["arena_bytes"])


# ------------------------------------------------------------------------------------------- qemu


@dataclass
class Calibration:
    """Instructions executed in loops of known length against what the counter says (ticks x 40)."""

    target: str
    machine: str
    loops: list[dict[str, int]]
    max_relative_error: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def calibrate(target_key: str, out_dir: Path) -> Calibration:
    """Run ``mcu_src/calibrate.c`` (SUBS + BNE loops) under ``-icount shift=0`` and compare the counter."""
    target = get_target(target_key)
    out_dir = Path(out_dir).resolve()
    b = Builder(MCU_SRC, target, out_dir)
    elf = b.link([*b.runtime(), b.cc(MCU_SRC / "calibrate.c", out_dir / "obj" / "calibrate.o")],
                 out_dir / "calibrate.elf")
    run_qemu(target, elf, out_dir / "run-calibrate", timeout=120)
    pairs = np.fromfile(out_dir / "run-calibrate" / "calibration.bin", dtype="<u4").reshape(-1, 2)
    loops = [{"instructions": int(n), "ticks": int(t), "measured": int(t) * INSTRUCTIONS_PER_TICK} for n, t in pairs]
    err = max(abs(lp["measured"] - lp["instructions"]) / lp["instructions"] for lp in loops)
    return Calibration(target.key, target.qemu_machine, loops, float(err))


# -------------------------------------------------------------------------------------------- clips
def render_clips(clips: list[np.ndarray], out_dir: Path) -> tuple[Path, Path]:
    """int16 clips -> ``clips.bin`` (trailing exact zeros not stored) + ``dssdn_clips.h`` + ``clips.S``."""
    stored, total, offsets, blobs, pos = [], [], [], [], 0
    for clip in clips:
        x = np.asarray(clip, dtype="<i2").ravel()
        nz = np.flatnonzero(x)
        keep = int(nz[-1]) + 1 if nz.size else 0
        offsets.append(pos)
        stored.append(keep)
        total.append(len(x))
        blobs.append(x[:keep].tobytes())
        pos += keep
    out_dir.mkdir(parents=True, exist_ok=True)
    binary = out_dir / "clips.bin"
    binary.write_bytes(b"".join(blobs) + b"\0\0")

    def arr(name: str, values: list[int]) -> str:
        return f"static const int32_t {name}[DSSDN_N_CLIPS] = {{{', '.join(map(str, values))}}};\n"

    (out_dir / "dssdn_clips.h").write_text(
        "/* dssdn_clips.h - GENERATED test audio for classify_firmware.c: int16 PCM in clips.bin (clips.S). */\n"
        "#ifndef DSSDN_CLIPS_H\n#define DSSDN_CLIPS_H\n#include <stdint.h>\n"
        f"#define DSSDN_N_CLIPS {len(clips)}\n"
        + arr("dssdn_clip_samples", total) + arr("dssdn_clip_stored", stored) + arr("dssdn_clip_offset", offsets)
        + "extern const int16_t dssdn_clip_pcm[];\n#endif\n"
    )
    asm = out_dir / "clips.S"
    asm.write_text('    .section .rodata.dssdn_clip_pcm, "a"\n    .balign 4\n    .global dssdn_clip_pcm\n'
                   f'dssdn_clip_pcm:\n    .incbin "{binary}"\n')
    return asm, out_dir / "dssdn_clips.h"


def batches(clips: list[np.ndarray], budget: int = CLIP_FLASH_BYTES) -> list[list[int]]:
    """Clip indices per firmware image, each batch's stored PCM within ``budget`` bytes."""
    out: list[list[int]] = [[]]
    used = 0
    for i, clip in enumerate(clips):
        nz = np.flatnonzero(np.asarray(clip))
        n = 2 * (int(nz[-1]) + 1 if nz.size else 0)
        if out[-1] and used + n > budget:
            out.append([])
            used = 0
        out[-1].append(i)
        used += n
    return out


@dataclass
class ClipRun:
    """What the firmware computed for each clip on the emulated core."""

    target: str
    machine: str
    clip_labels: list[int]  # -1: all digital silence
    windows: list[list[dict[str, Any]]]  # per clip: first_frame, silent, label, model_ticks
    scores: list[np.ndarray]  # per clip: (classified windows, classes) int8
    inputs: list[np.ndarray]  # per clip: (classified windows, frames, bands, channels) int8
    clip_ticks: list[int]
    clip_samples: list[int]
    stack_peak_bytes: int
    commands: list[list[str]] = field(default_factory=list)

    def instructions(self) -> dict[str, Any]:
        """Emulated instructions: per model call, per second of audio for everything else (front end and
        glue), and their sum, the cost of one 1-s window (one model call + 1 s of front end)."""
        model = [w["model_ticks"] * INSTRUCTIONS_PER_TICK for ws in self.windows for w in ws if not w["silent"]]
        other = []
        for ws, ticks, n in zip(self.windows, self.clip_ticks, self.clip_samples, strict=True):
            rest = ticks - sum(w["model_ticks"] for w in ws if not w["silent"])
            other.append(rest * INSTRUCTIONS_PER_TICK / (n / 16000))
        model_mean, other_mean = float(np.mean(model)), float(np.mean(other))
        return {
            "unit": "emulated instructions (qemu -icount shift=0; not time)",
            "model_per_window": round(model_mean),
            "model_per_window_min": int(min(model)),
            "model_per_window_max": int(max(model)),
            "frontend_and_glue_per_second": round(other_mean),
            "per_1s_window": round(model_mean + other_mean),
            "resolution": INSTRUCTIONS_PER_TICK,
            "windows": len(model),
        }


def run_clips(builder: Builder, clips: list[np.ndarray], timeout: float = 1800) -> ClipRun:
    """Stream int16 ``clips`` through the firmware on the builder's board, in as many images as flash needs."""
    if not clips:
        raise DeviceError("run_clips: no clips to run")
    hdr = model_header(builder.mcu_dir)
    objs = builder.compile_project(hooks=True)
    n_classes, in_bytes = hdr["out_classes"], hdr["in_bytes"]
    score_words = (n_classes + 3) // 4
    record = np.dtype([("kind", "<i4"), ("clip", "<i4"), ("a", "<i4"), ("b", "<i4"), ("c", "<i4"), ("d", "<i4"),
                       ("scores", "i1", 4 * score_words)])
    res = ClipRun(builder.target.key, builder.target.qemu_machine, [], [], [], [], [], [], 0)
    for k, idx in enumerate(batches(clips)):
        work = builder.out_dir / f"clips{k}"
        asm, _ = render_clips([clips[i] for i in idx], work)
        main = builder.cc(MCU_SRC / "classify_firmware.c", work / "classify_firmware.o", (f"-I{work}",))
        data = builder.cc(asm, work / "clips.o")
        elf = builder.link([*builder.runtime(), main, data, *objs], work / "classify.elf")
        res.commands.append(run_qemu(builder.target, elf, work / "run", timeout))
        recs = np.fromfile(work / "run" / "windows.bin", dtype=record)
        inputs = np.fromfile(work / "run" / "inputs.bin", dtype=np.int8)
        end = recs[recs["kind"] == END_KIND]
        if len(end) != 1 or end["b"][0] != 0:
            raise DeviceError(f"{elf}: the firmware did not finish cleanly on qemu -M {builder.target.qemu_machine}")
        res.stack_peak_bytes = max(res.stack_peak_bytes, int(end["a"][0]))
        used = 0
        for j, i in enumerate(idx):
            ws = recs[(recs["kind"] == WINDOW_KIND) & (recs["clip"] == j)]
            clip = recs[(recs["kind"] == CLIP_KIND) & (recs["clip"] == j)]
            live = ws[ws["b"] == 0]
            res.windows.append([{"first_frame": int(w["a"]), "silent": bool(w["b"]), "label": int(w["c"]),
                                 "model_ticks": int(w["d"])} for w in ws])
            res.scores.append(live["scores"][:, :n_classes].copy())
            shape = (len(live), hdr["in_frames"], hdr["in_bands"], hdr["in_channels"])
            res.inputs.append(inputs[used * in_bytes : (used + len(live)) * in_bytes].reshape(shape))
            used += len(live)
            res.clip_labels.append(int(clip["a"][0]))
            res.clip_ticks.append(int(clip["b"][0]))
            res.clip_samples.append(len(np.asarray(clips[i]).ravel()))
        if used * in_bytes != inputs.size:
            raise DeviceError(f"{work / 'run' / 'inputs.bin'}: {inputs.size} bytes, expected {used * in_bytes}")
    return res


# ------------------------------------------------------------------------------------------ measure
@dataclass
class Measurement:
    """Everything measured for one export on one core: footprint, calibration, instructions."""

    footprint: Footprint
    calibration: Calibration
    instructions: dict[str, Any]
    clips: int
    build_dir: str

    def to_dict(self) -> dict[str, Any]:
        return {"measured": True, "target": self.footprint.target, "core": self.footprint.core,
                "footprint": self.footprint.to_dict(), "calibration": self.calibration.to_dict(),
                "instructions": self.instructions, "clips": self.clips, "build_dir": self.build_dir}


def measure(mcu_dir: Path, target_key: str, out_dir: Path, clips: list[np.ndarray]) -> tuple[Measurement, ClipRun]:
    """Footprint from the probe image, stack and instructions from streaming ``clips`` (int16) on qemu."""
    target = get_target(target_key)
    builder = Builder(Path(mcu_dir), target, Path(out_dir))
    fp = measure_footprint(builder)
    run = run_clips(builder, clips)
    fp.stack_peak_bytes = run.stack_peak_bytes
    cal = calibrate(target_key, builder.out_dir / "calibrate")
    return Measurement(fp, cal, run.instructions(), len(clips), str(builder.out_dir)), run


def int8_tflite(manifest: dict[str, Any]) -> str:
    """The full-integer .tflite of the export (int8 input tensor): the file a microcontroller runs."""
    for rel, art in sorted(manifest["artifacts"].items()):
        dtype = str((art.get("input") or {}).get("dtype", ""))
        if art.get("bit_identical_to"):  # a CPU-layout twin of the MCU file (export/cpu_layout.py)
            continue
        if rel.endswith(".tflite") and ("int8" in dtype or (not dtype and "int8" in rel)):
            return rel
    raise DeviceError(f"export {manifest.get('name')}: no int8 .tflite artifact (needed for a microcontroller)")


def measure_project(mcu_dir: Path, target_key: str = "cortex-m4") -> tuple[dict[str, Any] | None, str]:
    """An export's ``mcu/`` project measured on an emulated board (footprint, stack, emulated instructions on
    a probe signal), for the export's manifest and bench; (None, why) when the Arm toolchain or qemu is missing."""
    import tempfile

    from ..mcu.project import probe_audio

    try:
        with tempfile.TemporaryDirectory(prefix=f"dssdn-fw-{target_key}-") as tmp:
            m, _ = measure(Path(mcu_dir), target_key, Path(tmp), [probe_audio()])
    except DeviceError as exc:
        return None, str(exc)
    return {**m.to_dict(), "build_dir": None, "audio": "2 s chirp in noise (mcu.project.probe_audio)"}, ""
