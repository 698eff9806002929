"""Peak memory of ``dssdn-edge predict``, ``features`` and ``train`` against the length of the recording.

    python benchmarks/predict_memory.py [--model models/dssdn-small.safetensors] [--minutes 10 60]
                                        [--commands predict features train] [--out benchmarks/results]

Each run is a fresh process on a FLAC file made of a real ESC-50 clip repeated to length; its peak resident
set size comes from the kernel (``wait4`` rusage of the child). ``predict FILE``; ``features FILE --npy``;
``train`` one epoch from scratch on a folder of two classes of two clips each, one of which is the file (the
others 5-s clips), with a fresh feature cache. Target, per command: the 60-minute file within 1.5× of the
5-second clip's peak — memory must not grow with the audio (a Raspberry Pi has 1–8 GB). Writes
predict_memory.{json,md}; exits 1 if a target fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
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
COMMANDS = ("predict", "features", "train")
CLIP = "audio/1-100038-A-14.flac"  # chirping birds: sound throughout, so every window is classified


def make_file(path: Path, seconds: float, clip: np.ndarray) -> None:
    n = int(seconds * 16000)
    with sf.SoundFile(str(path), "w", 16000, 1, "PCM_16") as fh:
        while n > 0:
            part = clip[: min(n, len(clip))]
            fh.write(part)
            n -= len(part)


def peak_rss_mb(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit status) of one child process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "DSSDN_PROGRESS": "0", **(env or {})})
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, time.perf_counter() - t0, proc.returncode


def command(name: str, path: Path, tmp: Path, model: Path, clip: np.ndarray) -> tuple[list[str], dict[str, str]]:
    """The command line measuring ``name`` on ``path`` and its extra environment."""
    cli = [sys.executable, "-m", "dssdn_edge.cli"]
    if name == "predict":
        return cli + ["predict", str(path), "--model", str(model)], {}
    if name == "features":
        out = tmp / "features.npy"
        out.unlink(missing_ok=True)
        return cli + ["features", str(path), "--npy", str(out)], {}
    data = tmp / "data"
    shutil.rmtree(data, ignore_errors=True)
    for label, files in (("birds", [path, None]), ("other", [None, None])):
        (data / label).mkdir(parents=True)
        for i, f in enumerate(files):
            dst = data / label / f"{i}.flac"
            if f is None:
                make_file(dst, 5.0, clip if label == "birds" else clip[::-1].copy())
            else:
                os.symlink(f, dst)
    run, cache = tmp / "run", tmp / "cache"
    shutil.rmtree(run, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    return cli + ["train", "--data", str(data), "--init", "none", "--epochs", "1", "--batch-size", "8",
                  "--out", str(run)], {"DSSDN_CACHE": str(cache)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=ROOT / "models" / "dssdn-small.safetensors")
    ap.add_argument("--minutes", type=float, nargs="+", default=[10.0, 60.0])
    ap.add_argument("--commands", nargs="+", choices=COMMANDS, default=list(COMMANDS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    clip = sf.read(str(default_data_root() / CLIP), dtype="float32")[0]
    rows = []
    with tempfile.TemporaryDirectory(prefix="dssdn-mem-") as tmp_name:
        tmp = Path(tmp_name)
        for seconds in [5.0] + [m * 60 for m in args.minutes]:
            path = tmp / f"{seconds:.0f}s.flac"
            make_file(path, seconds, clip)
            for name in args.commands:
                cmd, env = command(name, path, tmp, args.model, clip)
                rss, wall, rc = peak_rss_mb(cmd, env)
                if rc != 0:
                    print(f"error: {name} failed on {path.name} (exit {rc})", file=sys.stderr)
                    return 1
                rows.append({"command": name, "seconds": seconds, "peak_rss_mb": rss, "wall_s": wall})
                print(f"{name:8s} {seconds / 60:7.1f} min: peak RSS {rss:7.1f} MB, {wall:6.1f} s", flush=True)
            path.unlink()
    targets = {}
    for name in args.commands:
        mine = [r for r in rows if r["command"] == name]
        ratio = mine[-1]["peak_rss_mb"] / mine[0]["peak_rss_mb"]
        targets[name] = {"what": f"peak RSS of `{name}` on the {mine[-1]['seconds'] / 60:.0f}-min file / on the "
                                 f"5-s clip <= {TARGET}", "measured": ratio, "pass": ratio <= TARGET}
    passed = all(t["pass"] for t in targets.values())
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "model": str(args.model.relative_to(ROOT) if args.model.is_relative_to(ROOT) else args.model),
        "rows": rows,
        "targets": targets,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "predict_memory.json", result)
    lines = ["# Peak memory of `dssdn-edge predict`, `features` and `train` against the audio's length", "",
             f"{result['date']} · predict model `{result['model']}` · one fresh process per run, peak RSS from the "
             "kernel (rusage of the child) · a real ESC-50 clip repeated to length, 16 kHz FLAC · `features FILE "
             "--npy OUT`; `train --init none --epochs 1 --batch-size 8` on two classes of two clips, one of them "
             "the file, the others 5 s, fresh feature cache", "",
             "| command | audio | peak RSS | wall time |", "|---|---:|---:|---:|"]
    for r in rows:
        length = f"{r['seconds']:.0f} s" if r["seconds"] < 60 else f"{r['seconds'] / 60:.0f} min"
        lines.append(f"| {r['command']} | {length} | {r['peak_rss_mb']:.0f} MB | {r['wall_s']:.1f} s |")
    lines += ["", "| target | measured | result |", "|---|---:|---|"]
    for t in targets.values():
        lines.append(f"| {t['what']} | {t['measured']:.2f}× | {'PASS' if t['pass'] else 'FAIL'} |")
    write_text(args.out / "predict_memory.md", "\n".join(lines + [""]))
    print(f"wrote {args.out / 'predict_memory.md'}: {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
