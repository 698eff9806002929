"""Where the firmware's emulated instructions go outside the model call, function by function, on qemu.

    python benchmarks/mcu_profile.py [--exports /tmp] [--size small] [--core cortex-m4] [--clips 2] [--out DIR]

Why: `benchmarks/mcu.py` gives one number for the front end and the glue (per second of audio); to cut it one
needs to know which function spends what. No counter reads are added to the code: the classify firmware that
`mcu.py` measures (same regenerated `mcu/`, same fold-5 clips) runs once more on qemu with its translation-block
trace (`-d in_asm,exec,nochain`, filtered to the functions outside the generated model and its kernels), and each
executed block's instructions are summed per function. Inlined code counts in the function it was inlined into
(the FFT passes, the mel sums and the log all run inside `dssdn_logmel_frame`). EMULATED INSTRUCTIONS, not time.
The reset handler and the stack measurement run outside the per-clip count of `mcu.py` (and memset serves the
reset's bss clear too), so their rows are listed but do not belong to the per-second figure.

Writes mcu_profile.json and mcu_profile.md into --out (default: a temporary folder, printed).
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from mcu import fold5, regenerate  # noqa: E402

from dssdn_edge.device import firmware, mcu_check  # noqa: E402
from dssdn_edge.device.cortex_m import get_target, toolchain  # noqa: E402

_INSN = re.compile(r"^0x([0-9a-f]{8}):")


def functions(elf: Path) -> list[tuple[int, int, str]]:
    """(address, size, name) of the image's functions, by address."""
    nm = Path(toolchain()["arm-none-eabi-size"]).with_name("arm-none-eabi-nm")
    text = subprocess.run([str(nm), "-S", "-n", str(elf)], capture_output=True, text=True, check=True).stdout
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT" and int(parts[1], 16) > 0:
            out.append((int(parts[0], 16) & ~1, int(parts[1], 16), parts[3]))
    return sorted(out)


def trace_counts(cmd: list[str], ranges: list[tuple[int, int]], work: Path) -> Counter:
    """Executed instructions per address, from qemu's block trace restricted to ``ranges``."""
    log = work / "trace.log"
    flt = ",".join(f"0x{a:x}..0x{a + n - 1:x}" for a, n in ranges)
    subprocess.run([*cmd, "-d", "in_asm,exec,nochain", "-dfilter", flt, "-D", str(log)], cwd=work,
                   capture_output=True, check=True, timeout=1800)
    blocks: dict[int, list[int]] = {}
    runs: Counter = Counter()
    current: list[int] | None = None
    with log.open() as fh:
        for line in fh:
            m = _INSN.match(line)
            if m:
                addr = int(m.group(1), 16)
                if current is None:
                    current = blocks.setdefault(addr, [])
                    current.clear()
                current.append(addr)
            elif line.startswith("Trace"):
                runs[int(line.split("[")[1].split("/")[1], 16)] += 1
                current = None
            elif line.startswith("IN:"):
                current = None
    log.unlink()
    per_addr: Counter = Counter()
    for start, n in runs.items():
        for addr in blocks.get(start, ()):
            per_addr[addr] += n
    return per_addr


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", type=Path, default=Path("/tmp"))
    ap.add_argument("--size", default="small")
    ap.add_argument("--core", default="cortex-m4")
    ap.add_argument("--clips", type=int, default=2)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    paths = fold5(args.clips)
    clips = [mcu_check.read_int16(p) for p in paths]
    with tempfile.TemporaryDirectory(prefix="dssdn-mcu-profile-") as tmp:
        work = Path(tmp)
        mcu, info = regenerate(args.exports / f"exp_{args.size}", work)
        builder = firmware.Builder(mcu, get_target(args.core), work / args.core)
        run = firmware.run_clips(builder, clips)
        if len(run.commands) != 1:
            raise SystemExit("error: the clips need several images; profile fewer clips (--clips)")
        cmd = run.commands[0]
        elf = Path(cmd[cmd.index("-kernel") + 1])
        model = firmware.model_objects(mcu)
        in_model = [(a, n) for out_sec, _, a, n, obj in firmware.placed_sections(elf.with_suffix(".map").read_text())
                    if out_sec == ".text" and n > 0 and Path(obj.split("(")[0]).stem in model]
        model_starts = {a for a, _ in in_model}
        funcs = functions(elf)
        keep = [(a, n, name) for a, n, name in funcs if a not in model_starts]
        per_addr = trace_counts(cmd, [(a, n) for a, n, _ in keep], elf.parent)
    starts = [a for a, _, _ in keep]
    per_fn: Counter = Counter()
    for addr, n in per_addr.items():
        i = bisect.bisect_right(starts, addr) - 1
        per_fn[keep[i][2] if i >= 0 else "?"] += n
    hop = int(info["manifest"]["frontend"]["hop_length"])
    frames = sum(1 + len(c) // hop for c in clips)
    seconds = sum(len(c) for c in clips) / 16000
    rows = [{"function": f, "instructions": n, "per_frame": n / frames, "per_second": n / seconds}
            for f, n in per_fn.most_common()]
    result = {"size": args.size, "core": args.core, "clips": [p.name for p in paths], "frames": frames,
              "unit": "emulated instructions (qemu -icount shift=0 block trace; not time)",
              "model_call_per_window": run.instructions()["model_per_window"],
              "frontend_and_glue_per_second": run.instructions()["frontend_and_glue_per_second"], "functions": rows}
    out = args.out or Path(tempfile.mkdtemp(prefix="dssdn-mcu-profile-out-"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "mcu_profile.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Emulated instructions outside the model call: dssdn-{args.size} on {args.core}", "",
             f"`python benchmarks/mcu_profile.py`, {len(clips)} fold-5 clips, {frames} frames. Front end and glue "
             f"per second (benchmarks/mcu.py's figure): {result['frontend_and_glue_per_second']:,}.", "",
             "| function | per frame | per second of audio |", "|---|---:|---:|"]
    lines += [f"| {r['function']} | {r['per_frame']:,.0f} | {r['per_second']:,.0f} |"
              for r in rows if r["per_frame"] >= 1]
    (out / "mcu_profile.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[4:]))
    print(f"written: {out / 'mcu_profile.md'}")


if __name__ == "__main__":
    main()
