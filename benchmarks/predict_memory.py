"""Peak memory of ``dssdn-edge predict`` against the length of the recording.

    python benchmarks/predict_memory.py [--model models/dssdn-small.safetensors] [--minutes 10 60]
                                        [--out benchmarks/results]

Each run is a fresh ``dssdn-edge predict`` process on a FLAC file made of a real ESC-50 clip repeated to
length; its peak resident set size comes from the kernel (``wait4`` rusage of the child). Target: the
60-minute file within 1.5× of a 5-second clip's peak — memory must not grow with the audio (a Raspberry
Pi has 1–8 GB). Writes predict_memory.{json,md}; exits 1 if the target fails.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from dssdn_edge.data import default_data_root  # noqa: E402
from dssdn_edge.fileio import write_json, write_text  # noqa: E402

TARGET = 1.5
CLIP = "audio/1-100038-A-14.flac"  # chirping birds: sound throughout, so every window is classified


def make_file(path: Path, seconds: float, clip: np.ndarray) -> None:
    n = int(seconds * 16000)
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as fh:
        while n > 0:
            part = clip[: min(n, len(clip))]
            fh.write(part)
            n -= len(part)


def peak_rss_mb(cmd: list[str]) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit status) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "DSSDN_PROGRESS": "0"})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "dssdn-small.safetensors")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    clip = sf.read(str(default_data_root() / CLIP), dtype="float32")[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dssdn-mem-") as tmp:
        for seconds in [5.0] + [m * 60 for m in args.minutes]:
            path = Path(tmp) / f"{seconds:.0f}s.flac"
            make_file(path, seconds, clip)
            cmd = [sys.executable, "-m", "dssdn_edge.cli", "predict", str(path), "--model", str(args.model)]
            rss, wall, rc = peak_rss_mb(cmd)
            if rc != 0:
                print(f"error: predict failed on {path.name} (exit {rc})", file=sys.stderr)
                return 1
            rows.append({"seconds": seconds, "peak_rss_mb": rss, "wall_s": wall})
            print(f"{seconds / 60:7.1f} min: peak RSS {rss:7.1f} MB, {wall:6.1f} s", flush=True)
            path.unlink()
    ratio = rows[-1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    passed = ratio <= TARGET
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "rows": rows,
        "target": {"what": f"peak RSS of the {rows[-1]['seconds'] / 60:.0f}-min file / the 5-s clip's <= {TARGET}",
                   "measured": ratio, "pass": passed},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "predict_memory.json", result)
    lines = ["# Peak memory of `dssdn-edge predict`", "",
             f"{result['date']} · model `{result['model']}` · one fresh process per file, peak RSS from the kernel "
             "(rusage of the child) · a real ESC-50 clip repeated to length, 16 kHz FLAC", "",
             "| audio | peak RSS | wall time |", "|---:|---:|---:|"]
    for r in rows:
        length = f"{r['seconds']:.0f} s" if r["seconds"] < 60 else f"{r['seconds'] / 60:.0f} min"
        lines.append(f"| {length} | {r['peak_rss_mb']:.0f} MB | {r['wall_s']:.1f} s |")
    t = result["target"]
    lines += ["", "| target | measured | result |", "|---|---:|---|",
              f"| {t['what']} | {t['measured']:.2f}× | {'PASS' if passed else 'FAIL'} |", ""]
    write_text(args.out / "predict_memory.md", "\n".join(lines))
    print(f"wrote {args.out / 'predict_memory.md'}: {'PASS' if passed else 'FAIL'} ({ratio:.2f}×)")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
