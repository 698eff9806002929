"""The whole model on an emulated Cortex-M4/M7: flash, RAM and emulated instructions per size, against goals.

    python benchmarks/mcu.py [--exports /tmp] [--sizes small middle large] [--clips 4]

For each size, the export's ``mcu/`` folder is regenerated with the current code generator and C front end
(from ``<exports>/exp_<size>``: its int8 .tflite, manifest labels, front end and normalisation), linked into
firmware and measured (``dssdn_edge.device.firmware``): flash and RAM from the linker map and the painted
stack, instructions from qemu ``-icount shift=0`` on real fold-5 clips. TFLM's arena (manifest
``tflm.arena_bytes``, the pip wheel's recording allocator) is listed beside it. Instructions are EMULATED
INSTRUCTIONS, not time. Writes benchmarks/results/mcu.json, mcu.md and mcu.png.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dssdn_edge.bench.mcu import manifest_arena_bytes  # noqa: E402
from dssdn_edge.device import firmware, mcu_check  # noqa: E402
from dssdn_edge.device.firmware import int8_tflite  # noqa: E402
from dssdn_edge.frontend import FrontendConfig, Normalization  # noqa: E402
from dssdn_edge.frontend_c import emit_c  # noqa: E402
from dssdn_edge.mcu import project as mcu_project  # noqa: E402

KIB = 1024
GOALS_SMALL = {"ram_bytes": 40 * KIB, "ram_bytes_stretch": 32 * KIB, "flash_bytes": 110 * KIB,
               "const_bytes_per_weight": 1.25, "instructions_per_window_m4": 10_000_000,
               "instructions_per_window_m4_stretch": 6_000_000}
GOALS_BIG = {"ram_bytes": 256 * KIB, "flash_bytes": 1024 * KIB}


def regenerate(export: Path, work: Path) -> tuple[Path, dict]:
    """A fresh mcu/ for ``export`` with the current generator, front end and project files."""
    from dssdn_edge.mcu.generate import generate_model_c

    manifest = json.loads((export / "manifest.json").read_text())
    rel = int8_tflite(manifest)
    io = manifest["artifacts"][rel]["input"]
    mcu = work / "mcu"
    mcu.mkdir(parents=True)
    report = generate_model_c((export / rel).read_bytes(), mcu, manifest["name"], list(manifest["labels"]))
    emit_c(FrontendConfig.from_dict(manifest["frontend"]), mcu, force=True,
           normalization=Normalization.from_dict(manifest["normalization"]),
           input_quant=(io["scale"], int(io["zero_point"])), pcm16=True)
    mcu_project.write_project(mcu, manifest["name"])
    return mcu, {"manifest": manifest, "generator": report}


def fold5(n: int) -> list[Path]:
    root = ROOT.parent / "shared" / "data" / "esc50_16k"
    with (root / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
    rows.sort(key=lambda r: (int(r["take"] != "A"), int(r["target"]), r["filename"]))
    return [root / r["filename"] for r in rows[:: max(1, len(rows) // n)][:n]]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exports", type=Path, default=Path("/tmp"))
    ap.add_argument("--sizes", nargs="+", default=["small", "middle", "large"])
    ap.add_argument("--cores", nargs="+", default=["cortex-m4", "cortex-m7"])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    paths = fold5(args.clips)
    clips = [mcu_check.read_int16(p) for p in paths]
    results = []
    for size in args.sizes:
        export = args.exports / f"exp_{size}"
        with tempfile.TemporaryDirectory(prefix=f"dssdn-bench-mcu-{size}-") as tmp:
            mcu, info = regenerate(export, Path(tmp))
            gen = info["generator"]
            for core in args.cores:
                m, run = firmware.measure(mcu, core, Path(tmp) / core, clips)
                d = m.to_dict()
                d["build_dir"] = None
                fp = d["footprint"]
                row = {"size": size, "model": info["manifest"]["name"], "core": core, **d,
                       "weights": gen.weights, "const_bytes": gen.const_bytes,
                       "const_bytes_per_weight": gen.const_bytes / gen.weights,
                       "tflm_arena_bytes": manifest_arena_bytes(info["manifest"]),
                       "clips_run": [str(p.name) for p in paths]}
                goals = GOALS_SMALL if size == "small" else GOALS_BIG
                checks = {"ram": fp["ram_bytes"] <= goals["ram_bytes"],
                          "flash": fp["flash_bytes"] <= goals["flash_bytes"]}
                if size == "small":
                    checks["ram_stretch"] = fp["ram_bytes"] <= goals["ram_bytes_stretch"]
                    checks["const_per_weight"] = row["const_bytes_per_weight"] <= goals["const_bytes_per_weight"]
                    if core == "cortex-m4":
                        ins = d["instructions"]["per_1s_window"]
                        checks["instructions"] = ins <= goals["instructions_per_window_m4"]
                        checks["instructions_stretch"] = ins <= goals["instructions_per_window_m4_stretch"]
                row["goals"], row["checks"] = goals, checks
                results.append(row)
                print(f"{size} {core}: flash {fp['flash_bytes']:,} B, RAM {fp['ram_bytes']:,} B, "
                      f"{d['instructions']['per_1s_window']:,} emulated instructions per 1-s window", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "mcu.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = ["# The whole model on an emulated Cortex-M (generated C)", "",
             "`python benchmarks/mcu.py`. Flash = text + rodata + data of the linked firmware (probe image, no test "
             "data); RAM = data + bss + peak stack painted on qemu. Instructions: qemu `-icount shift=0`, "
             "EMULATED INSTRUCTIONS (not time), per 1-s window = one model call + 1 s of front end. "
             "TFLM arena: the pip wheel's recording allocator (manifest), before any front end.", "",
             "| model | core | flash | RAM | model / front end / glue flash | model / front end / glue / stack RAM "
             "| TFLM arena | const B/weight | instr. per 1-s window | checks |",
             "|---|---|---:|---:|---|---|---:|---:|---:|---|"]
    for r in results:
        fp = r["footprint"]
        fl, ra = fp["flash_by_part"], fp["ram_by_part"]
        checks = ", ".join(f"{k} {verdict(v)}" for k, v in r["checks"].items())
        lines.append(
            f"| {r['model']} | {r['core']} | {fp['flash_bytes'] / KIB:.1f} KiB | {fp['ram_bytes'] / KIB:.1f} KiB | "
            f"{fl['model']:,} / {fl['frontend']:,} / {fl['glue']:,} | {ra['model']:,} / {ra['frontend']:,} / "
            f"{ra['glue']:,} / {ra['stack']:,} | {(r['tflm_arena_bytes'] or 0) / KIB:.1f} KiB | "
            f"{r['const_bytes_per_weight']:.2f} | {r['instructions']['per_1s_window']:,} | {checks} |")
    lines += ["", "Goals: dssdn-small RAM <= 40 KiB (stretch 32), flash <= 110 KiB, constants <= 1.25 B per weight, "
              "<= 10 M emulated instructions per 1-s window on the M4 (stretch 6 M); middle and large within "
              "256 KiB RAM and 1 MiB flash. Instruction clock proven per core: "
              + ", ".join(f"{r['core']} {r['calibration']['max_relative_error']:.3%}" for r in results[:2]), ""]
    (args.out / "mcu.md").write_text("\n".join(lines))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        m4 = [r for r in results if r["core"] == "cortex-m4"]
        fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
        names = [r["model"] for r in m4]
        ax[0].bar(names, [r["footprint"]["ram_bytes"] / KIB for r in m4], label="firmware RAM")
        ax[0].plot(names, [(r["tflm_arena_bytes"] or 0) / KIB for r in m4], "ko", label="TFLM arena alone")
        ax[0].set_ylabel("KiB")
        ax[0].legend()
        ax[1].bar(names, [r["instructions"]["per_1s_window"] / 1e6 for r in m4])
        ax[1].set_ylabel("M emulated instructions / 1-s window (M4)")
        fig.tight_layout()
        fig.savefig(args.out / "mcu.png", dpi=100)
    except ImportError:
        shutil.rmtree(args.out / "mcu.png", ignore_errors=True)


if __name__ == "__main__":
    main()
