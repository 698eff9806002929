"""Where the generated model's emulated instructions go: per op and per op kind, on an emulated Cortex-M4/M7.

    python benchmarks/mcu_ops.py [--exports /tmp] [--size small] [--cores cortex-m4 cortex-m7]

Generates the model's C from ``<exports>/exp_<size>/<name>.int8.tflite`` with the current generator, adds a
read of the MPS2 counter after every op of ``<symbol>_invoke`` (a copy of the generated file, for this
measurement only), links it with the kernels for the core (``-O2``, the firmware's flags) and runs one model
call on ``qemu-system-arm -icount shift=0`` with one fold-5 window's int8 input (the export's own cutting,
normalisation and quantisation). One counter tick is 40 instructions, so each op is resolved to 40. These are
EMULATED INSTRUCTIONS, not time. Writes benchmarks/results/mcu_ops.json and mcu_ops.md.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dssdn_edge.device.cortex_m import MCU_SRC, TARGETS, run_qemu, toolchain  # noqa: E402
from dssdn_edge.device.firmware import INSTRUCTIONS_PER_TICK  # noqa: E402
from dssdn_edge.mcu.generate import KERNEL_SOURCES, generate_model_c  # noqa: E402

MAX_OPS = 1024
MAIN = """#include <stdint.h>
#include "dssdn_model.h"
#include "mps2_clock.h"
#include "semihost.h"
#include "window.h"

uint32_t g_op_ticks[MAX_OPS + 2];

int main(void)
{
    int8_t *in = dssdn_model_input();
    for (int j = 0; j < DSSDN_MODEL_IN_BYTES; ++j) {
        in[j] = g_window[j];
    }
    g_op_ticks[MAX_OPS] = mps2_counter();
    const int8_t *out = dssdn_model_invoke();
    g_op_ticks[MAX_OPS + 1] = mps2_counter();
    int fd = sh_open("ticks.bin", 6);
    if (fd < 0 || sh_write(fd, g_op_ticks, sizeof(g_op_ticks)) != 0 || sh_write(fd, out, DSSDN_MODEL_OUT_CLASSES)) {
        return 1;
    }
    sh_close(fd);
    return 0;
}
"""


def instrument(source: str) -> tuple[str, dict[int, str]]:
    """The generated source with a counter read after each op; {op index: kind}."""
    lines, kinds, current = [], {}, None
    for ln in source.splitlines():
        m = re.match(r"    /\* op #(\d+) (\w+):", ln)
        if m or (ln.strip().startswith("return A +") and current is not None):
            if current is not None:
                lines.append(f"    g_op_ticks[{current}] = mps2_counter();")
            current = int(m.group(1)) if m else None
            if m:
                kinds[current] = m.group(2)
        lines.append(ln)
    head = f'#include "mps2_clock.h"\nextern uint32_t g_op_ticks[{MAX_OPS + 2}];\n'
    return "\n".join(lines).replace('#include "dssdn_model.h"', '#include "dssdn_model.h"\n' + head, 1), kinds


def one_window(model: bytes, size: str) -> np.ndarray:
    from dssdn_edge.export import sources
    from dssdn_edge.export.pipeline import resolve_checkpoint
    from dssdn_edge.export.tflm import open_tflm

    ev = sources.source_windows(resolve_checkpoint(size), "evaluation")
    if ev is None:
        raise SystemExit("error: ESC-50 fold 5 is not available")
    return open_tflm(model, size).prepare(ev.windows[:1])[0]


def profile(model: bytes, window: np.ndarray, core: str, work: Path) -> dict:
    generate_model_c(model, work, "profile")
    src, kinds = instrument((work / "dssdn_model.c").read_text())
    (work / "dssdn_model.c").write_text(src)
    (work / "main.c").write_text(f"#define MAX_OPS {MAX_OPS}\n" + MAIN)
    (work / "window.h").write_text("static const int8_t g_window[] = {" + ",".join(map(str, window.reshape(-1)))
                                   + "};\n")
    t = TARGETS[core]
    srcs = [work / n for n in ("main.c", "dssdn_model.c", *KERNEL_SOURCES)]
    srcs += [MCU_SRC / "startup.c", MCU_SRC / "semihost.c"]
    elf = work / "profile.elf"
    subprocess.run([toolchain()["arm-none-eabi-gcc"], *t.cflags, "-O2", "-std=c99", "-ffunction-sections",
                    "-fdata-sections", f"-I{work}", f"-I{MCU_SRC}", "-nostartfiles", "--specs=nano.specs",
                    "--specs=nosys.specs", f"-T{MCU_SRC / 'mps2.ld'}", "-Wl,--gc-sections", *map(str, srcs),
                    "-o", str(elf)], check=True)
    run_qemu(t, elf, work / "run", timeout=600)
    raw = np.fromfile(work / "run" / "ticks.bin", np.uint8)
    ticks = raw[: 4 * (MAX_OPS + 2)].view("<u4").astype(np.int64)
    per_op, prev = {}, ticks[MAX_OPS]
    for k in sorted(kinds):
        if ticks[k]:
            per_op[k] = int(ticks[k] - prev) * INSTRUCTIONS_PER_TICK
            prev = ticks[k]
    by_kind: dict[str, int] = defaultdict(int)
    for k, v in per_op.items():
        by_kind[kinds[k]] += v
    return {"core": t.core, "model_instructions": int(ticks[MAX_OPS + 1] - ticks[MAX_OPS]) * INSTRUCTIONS_PER_TICK,
            "by_kind": dict(sorted(by_kind.items(), key=lambda kv: -kv[1])),
            "per_op": [{"op": k, "kind": kinds[k], "instructions": v} for k, v in per_op.items()]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", type=Path, default=Path("/tmp"))
    ap.add_argument("--size", default="small")
    ap.add_argument("--cores", nargs="+", default=["cortex-m4", "cortex-m7"])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    export = args.exports / f"exp_{args.size}"
    model = (export / f"dssdn-{args.size}.int8.tflite").read_bytes()
    window = one_window(model, args.size)
    rows = []
    for core in args.cores:
        with tempfile.TemporaryDirectory(prefix=f"dssdn-mcu-ops-{core}-") as tmp:
            rows.append(profile(model, window, core, Path(tmp)))
        n = rows[-1]["model_instructions"]
        print(f"{args.size} {core}: {n:,} emulated instructions per model call", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mcu_ops.json").write_text(json.dumps({"model": f"dssdn-{args.size}", "rows": rows}, indent=1) + "\n")
    lines = [f"# Emulated instructions per op kind, dssdn-{args.size} (generated C)", "",
             "`python benchmarks/mcu_ops.py`: one model call on one fold-5 window, qemu `-icount shift=0`, counter "
             "read after every op (resolution 40). EMULATED INSTRUCTIONS, not time.", "",
             "| op kind | " + " | ".join(r["core"] for r in rows) + " |",
             "|---|" + "---:|" * len(rows)]
    kinds = list(rows[0]["by_kind"])
    for kind in kinds:
        cells = [f"{r['by_kind'].get(kind, 0):,} ({r['by_kind'].get(kind, 0) / r['model_instructions']:.1%})"
                 for r in rows]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    lines.append("| **model call** | " + " | ".join(f"**{r['model_instructions']:,}**" for r in rows) + " |")
    top = sorted(rows[0]["per_op"], key=lambda o: -o["instructions"])[:10]
    lines += ["", f"Costliest ops ({rows[0]['core']}): "
              + ", ".join(f"#{o['op']} {o['kind']} {o['instructions']:,}" for o in top), ""]
    (args.out / "mcu_ops.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
