"""Does an export fit a microcontroller? Flash and RAM against the named boards' budgets.

Two bases, never mixed and always named in ``Footprint.basis``:

- **measured** (the export's mcu/ has the generated model, as ``export --int8`` writes it): the whole firmware
  (generated model + C front end + classifier glue + startup and C library) linked for the core, flash and
  RAM from its linker map and the stack painted on qemu, emulated instructions per 1-s window
  (``device.firmware``);
- **ESTIMATE (no generated model)**, for exports made before the generator: the int8 .tflite bytes + the
  front end (measured when the Arm toolchain is installed, else tables + an allowance) + an ALLOWANCE for the
  TFLM interpreter and kernels; RAM = the arena the real TFLM interpreter (pip ``tflite-micro``) allocates +
  the front end's state.

TFLM's arena is reported in both (measured with the wheel: planner estimates miss its persistent
allocations), as the reference a TFLM user would see.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .. import runtime
from ..device.firmware import int8_tflite  # noqa: F401  (re-exported: bench callers name it here)
from ..errors import BenchError
from .devices import McuBoard

# Only for the ESTIMATE basis (an export without the generated model): an allowance for the TFLM
# interpreter, allocator and flatbuffer reader plus one CMSIS-NN kernel per distinct op, and for the front
# end's code when the Arm toolchain is missing. Never presented as measured.
MEASURED = "measured (linked firmware: generated model + front end + glue, qemu)"
ESTIMATE = "ESTIMATE (no generated model in mcu/: TFLM arena measured, TFLM code an allowance)"
CODE_RUNTIME_BYTES = 64 * 1024
CODE_PER_OP_BYTES = 6 * 1024
CODE_FRONTEND_BYTES = 4 * 1024
CODE_SOURCE = (
    f"ALLOWANCE, not measured: {CODE_RUNTIME_BYTES // 1024} KB TFLM runtime + {CODE_PER_OP_BYTES // 1024} KB "
    f"per distinct op kernel + {CODE_FRONTEND_BYTES // 1024} KB front end; replace with a linker map"
)
C_TYPE_BYTES = {
    "DSSDN_REAL": 4,
    "float": 4,
    "double": 8,
    "uint16_t": 2,
    "int16_t": 2,
    "uint8_t": 1,
    "int8_t": 1,
    "int32_t": 4,
    "uint32_t": 4,
    "int": 4,
}
_ARRAY = re.compile(r"static\s+const\s+(\w+)\s+(\w+)\s*\[\s*(\d+)\s*\]")
_ARENA = re.compile(r"Arena allocation total (\d+) bytes")
_ARENA_PART = re.compile(r"Arena allocation (head|tail) (\d+) bytes")


@dataclass
class Footprint:
    """Flash and RAM of model + front end on a Cortex-M, with where each number came from."""

    model_bytes: int
    frontend_tables_bytes: int
    code_bytes: int | None  # the TFLM code allowance (ESTIMATE basis only; None when measured)
    arena_bytes: int
    arena_head_bytes: int | None
    arena_tail_bytes: int | None
    frontend_ram_bytes: int
    ops: list[str]
    sources: dict[str, str] = field(default_factory=dict)
    manifest_arena_bytes: int | None = None
    frontend_build: dict[str, Any] | None = None  # cortex_m.FrontendBuild.to_dict() when measured
    firmware: dict[str, Any] | None = None  # device.firmware.Measurement.to_dict(): the whole linked firmware

    @property
    def measured(self) -> bool:
        """True when flash and RAM come from a linked firmware (generated model + front end + glue)."""
        return self.firmware is not None

    @property
    def basis(self) -> str:
        return MEASURED if self.measured else ESTIMATE

    @property
    def model_ram_bytes(self) -> int:
        """The activation arena the device needs in one block: the generated model's when measured, else TFLM's."""
        if self.firmware is not None:
            return int(self.firmware["footprint"]["arena_bytes"])
        return self.arena_bytes

    @property
    def frontend_flash_bytes(self) -> int:
        """Measured (code + tables + library code it pulls in) when built, else tables + allowance."""
        if self.firmware is not None:
            return int(self.firmware["footprint"]["flash_by_part"]["frontend"])
        if self.frontend_build is not None:
            return int(self.frontend_build["flash_bytes"])
        return self.frontend_tables_bytes + CODE_FRONTEND_BYTES

    @property
    def flash_bytes(self) -> int:
        if self.firmware is not None:
            return int(self.firmware["footprint"]["flash_bytes"])
        return self.model_bytes + self.frontend_flash_bytes + (self.code_bytes or 0)

    @property
    def ram_bytes(self) -> int:
        if self.firmware is not None:
            return int(self.firmware["footprint"]["ram_bytes"])
        return self.arena_bytes + self.frontend_ram_bytes

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "flash_bytes": self.flash_bytes, "ram_bytes": self.ram_bytes,
                "frontend_flash_bytes": self.frontend_flash_bytes, "model_ram_bytes": self.model_ram_bytes,
                "measured": self.measured, "basis": self.basis}


@dataclass(frozen=True)
class Fit:
    board: str
    flash_ok: bool
    ram_ok: bool
    arena_block_ok: bool
    flash_headroom: int
    ram_headroom: int

    @property
    def fits(self) -> bool:
        return self.flash_ok and self.ram_ok and self.arena_block_ok

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


# --------------------------------------------------------------------------------------- tables
_ELSE_BRANCH = re.compile(r"^#else\b.*?^#endif\b", re.S | re.M)


def tables_bytes(header_text: str) -> int:
    """Bytes of every ``static const TYPE name[N]`` table (DSSDN_REAL as float: the device build). Where the
    header holds a table in two layouts (``#if DSSDN_WINDOW_HALF`` ... ``#else`` ...), the first is the one a
    scalar core (the device) compiles: the ``#else`` branches are not counted."""
    total = 0
    for ctype, name, n in _ARRAY.findall(_ELSE_BRANCH.sub("", header_text)):
        if ctype not in C_TYPE_BYTES:
            raise BenchError(f"dssdn_frontend_tables.h: unknown C type {ctype} of {name}")
        total += C_TYPE_BYTES[ctype] * int(n)
    return total


def frontend_ram_bytes(fe: dict[str, Any]) -> tuple[int, str]:
    """dssdn_frontend_t (window buffer N_FFT floats, 2 ints, scratch N_FFT + N_BINS reals) + one output
    frame + the log-mel history the delta needs (delta_width frames) + one hop of int16 microphone samples."""
    n_fft, n_mels, hop = int(fe["n_fft"]), int(fe["n_mels"]), int(fe["hop_length"])
    n_bins = n_fft // 2 + 1
    state = 4 * n_fft + 8 + 4 * (n_fft + n_bins)
    frame, history, mic = 4 * n_mels, 4 * n_mels * int(fe.get("delta_width") or 0), 2 * hop
    why = (
        f"front end RAM: state {state} B (buf {n_fft} floats + scratch {n_fft}+{n_bins} floats) + frame "
        f"{frame} B + delta history {history} B + one hop of int16 audio {mic} B"
    )
    return state + frame + history + mic, why


# ------------------------------------------------------------------------------------------ TFLM
def measure_arena(tflite_path: Path) -> dict[str, int]:
    """Arena bytes the real TFLM interpreter allocates (RecordingMicroAllocator total, head, tail). The
    interpreter is built in an arena large enough, then asked what it used; TFLM rejects unsupported ops
    here, which is the MCU compatibility check."""
    try:
        import tflite_micro  # noqa: F401
    except ImportError:
        raise BenchError(
            "tflite-micro is not installed (pip install --pre tflite-micro): cannot size the TFLM arena"
        ) from None
    model = Path(tflite_path).read_bytes()
    size, last_error = max(1 << 20, 10 * len(model)), ""
    while size <= 1 << 28:
        try:
            text = runtime.load(model, kind="tflm", arena_size=size, quiet=True).allocations()
        except runtime.ModelLoadError as exc:
            last_error = exc.detail.strip().splitlines()[-1] if exc.detail.strip() else "RuntimeError"
            if "arena" not in exc.detail.lower() and "allocate" not in exc.detail.lower():
                raise BenchError(f"{tflite_path}: TFLM cannot load it ({last_error})") from None
            size *= 4
            continue
        match = _ARENA.search(text)
        if not match:
            raise BenchError(f"{tflite_path}: TFLM did not report its arena allocation")
        parts = {k: int(v) for k, v in _ARENA_PART.findall(text)}
        return {"total": int(match.group(1)), "head": parts.get("head", 0), "tail": parts.get("tail", 0)}
    raise BenchError(f"{tflite_path}: TFLM could not allocate even a {size >> 20} MB arena ({last_error})")


def tflite_ops(tflite_path: Path) -> list[str]:
    """Distinct builtin ops of the .tflite (for the code-size allowance)."""
    from tflite_micro.python.tflite_micro import runtime as tflm

    model = tflm.convert_bytearray_to_object(bytearray(Path(tflite_path).read_bytes()))
    names = {tflm.get_builtin_code_from_operator_code(op) for op in model.operatorCodes}
    inverse = {v: k for k, v in vars(tflm.schema_fb.BuiltinOperator).items() if not k.startswith("_")}
    return sorted(inverse.get(code, str(code)) for code in names)


# ------------------------------------------------------------------------------------ footprint
def measured_frontend(
    fe: dict[str, Any], device: str, src_dir: Path | None = None
) -> tuple[dict[str, Any] | None, str]:
    """The front end cross-compiled for ``device`` (from the export's own C sources in ``src_dir`` when
    given) and run on qemu (``device.cortex_m``), or None with the reason when the Arm toolchain is not
    installed. A failing C build is an error (the compiler's first error line), not a fallback."""
    from ..device import cortex_m
    from ..errors import DeviceError
    from ..frontend import Frontend, FrontendConfig
    from ..runtime.logmel import LogMel, test_audio

    try:
        cortex_m.toolchain()
    except DeviceError as exc:
        return None, str(exc)
    cfg = FrontendConfig.from_dict(fe)
    with tempfile.TemporaryDirectory(prefix=f"dssdn-{device}-") as tmp:
        try:
            build = cortex_m.build_frontend(cfg, device, Path(tmp), src_dir=src_dir)
            audio = test_audio(LogMel(fe))
            try:
                run = cortex_m.run_on_qemu(build, cfg, [audio])
                ref = Frontend(cfg).logmel(audio)
                err = cortex_m.max_error_within(ref, run.frames[0], 6.0)
                build.qemu = {**(build.qemu or {}), "max_abs_error_within_60db": err}
            except DeviceError as exc:
                if "not installed" not in str(exc):
                    raise
        except DeviceError as exc:
            raise BenchError(str(exc)) from None
    return build.to_dict(), ""


def footprint(export_dir: Path, manifest: dict[str, Any], device: str | None = None) -> Footprint:
    """Flash and RAM of the export on a Cortex-M (see the module docstring for the two bases). With
    ``device`` (cortex-m4/m7) and the generated model in mcu/, the whole firmware is linked and run on qemu;
    without the generated model the front end alone is cross-compiled and the rest is an ESTIMATE."""
    rel = int8_tflite(manifest)
    path = Path(export_dir) / rel
    header = next(iter(sorted(Path(export_dir).rglob("dssdn_frontend_tables.h"))), None)
    if header is not None:
        table_text, table_src = header.read_text(), f"counted from {header.relative_to(export_dir)}"
    else:
        from ..frontend import FrontendConfig
        from ..frontend_c import render_tables_header

        table_text = render_tables_header(FrontendConfig.from_dict(manifest["frontend"]))
        table_src = "counted from dssdn_frontend_tables.h rendered for the manifest's front end"
    arena = measure_arena(path)
    ops = tflite_ops(path)
    arena_src = ("measured: tflite-micro interpreter (host reference kernels), RecordingMicroAllocator total; "
                 "CMSIS-NN kernels may add a few KB of scratch")
    common = dict(model_bytes=path.stat().st_size, frontend_tables_bytes=tables_bytes(table_text),
                  arena_bytes=arena["total"], arena_head_bytes=arena["head"], arena_tail_bytes=arena["tail"],
                  ops=ops, manifest_arena_bytes=manifest_arena_bytes(manifest))
    firmware_measured = measured_firmware(Path(export_dir), device) if device else None
    if firmware_measured is not None:
        fw = firmware_measured["footprint"]
        return Footprint(
            **common, code_bytes=None, frontend_ram_bytes=int(fw["ram_by_part"]["frontend"]),
            firmware=firmware_measured,
            sources={
                "flash": f"measured: text + rodata + data of the linked firmware ({fw['compiler']}, "
                         f"{' '.join(fw['cflags'])}), split by object file from the linker map",
                "ram": "measured: data + bss of the linked firmware + the peak stack painted on qemu -M "
                       f"{firmware_measured['calibration']['machine']}",
                "model": "generated C (mcu/dssdn_model.c + the dssdn_* kernels): its constants, code and arena",
                "frontend_tables": table_src + " (DSSDN_REAL = float)",
                "tflm_arena": "for comparison only: " + arena_src,
            },
        )
    fe_ram, fe_why = frontend_ram_bytes(manifest["frontend"])
    shipped_src = header.parent if header is not None and (header.parent / "dssdn_frontend.c").is_file() else None
    build, why_not = (measured_frontend(manifest["frontend"], device, shipped_src) if device
                      else (None, "no target core"))
    code_source = CODE_SOURCE.replace(f" + {CODE_FRONTEND_BYTES // 1024} KB front end", "")
    fe_flash_why = (f"front end ALLOWANCE {CODE_FRONTEND_BYTES // 1024} KB code + counted tables "
                    f"(not built: {why_not})")
    if build is not None:
        fe = manifest["frontend"]
        history = 4 * int(fe["n_mels"]) * int(fe.get("delta_width") or 0)  # the delta is not in the C twin
        fe_ram = int(build["ram_bytes"]) + history
        stack = (f"peak {build['stack_peak_bytes']} B measured on qemu -M {build['qemu']['machine']}"
                 if build.get("stack_peak_bytes") is not None else
                 f"static worst case {build['stack']['bytes']} B of its own functions (-fstack-usage)")
        fe_why = (f"front end RAM measured: {build['static_ram_bytes']} B static (state, one frame, one hop of "
                  f"input; arm-none-eabi-size) + stack {stack} + delta history {history} B (computed: the "
                  "delta step is not part of the C twin)")
        fe_flash_why = (f"front end flash measured: {build['flash_bytes']} B = image with it minus image without it "
                        f"({build['compiler']}, {' '.join(build['cflags'])}), tables and library code included")
    return Footprint(
        **common,
        code_bytes=CODE_RUNTIME_BYTES + CODE_PER_OP_BYTES * len(ops),
        frontend_ram_bytes=fe_ram,
        frontend_build=build,
        sources={
            "basis": ESTIMATE + "; export again with --int8 for the generated model and measured numbers",
            "model": f"{rel} size (the array in mcu/model_data.cc)",
            "frontend_tables": table_src + " (DSSDN_REAL = float)",
            "frontend_flash": fe_flash_why,
            "code": code_source + f" ({len(ops)} distinct ops; the TFLM kernels are not built here)",
            "arena": arena_src,
            "frontend_ram": fe_why,
        },
    )


def measured_firmware(export_dir: Path, device: str) -> dict[str, Any] | None:
    """The whole firmware (generated model, front end, glue) linked for ``device`` and run on qemu
    (``device.firmware``), when the export's mcu/ has the generated model; None without it. A missing
    toolchain is one error line naming what to install."""
    from ..device import firmware

    mcu_dir = Path(export_dir) / "mcu"
    if not (mcu_dir / firmware.MODEL_HEADER).is_file():
        return None
    measured, why_not = firmware.measure_project(mcu_dir, device)
    if measured is None:
        raise BenchError(why_not)
    return measured


def manifest_arena_bytes(manifest: dict[str, Any]) -> int | None:
    """The arena the exporter recorded (on whichever artifact carries a 'tflm' section), if any."""
    for art in manifest["artifacts"].values():
        arena = (art.get("tflm") or {}).get("arena_bytes")
        if isinstance(arena, int):
            return arena
    return None


def fit(fp: Footprint, board: McuBoard) -> Fit:
    return Fit(
        board.name,
        fp.flash_bytes <= board.flash_bytes,
        fp.ram_bytes <= board.ram_bytes,
        fp.model_ram_bytes <= board.largest_ram_block,
        board.flash_bytes - fp.flash_bytes,
        board.ram_bytes - fp.ram_bytes,
    )
