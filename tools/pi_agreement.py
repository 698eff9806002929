"""Emulated Raspberry Pi vs this x86 host: same runtime and numpy versions, fold-5 ESC-50 clips.

    python tools/pi_agreement.py --export exports/dssdn-small --board rpi4 --runtime tflite-runtime --clips 80

Builds (or reuses) the emulated board in the cache folder, takes the loudest second of ``--clips`` fold-5
clips spread over the fold, and prints how far the device's features and outputs are from x86's (int8
steps, top-1 flips with x86's margin there, fp32 differences); ``--json FILE`` keeps the statistics.
Agreement only: emulated timings are not a Pi's, and none are taken here.
"""

from __future__ import annotations

import argparse
import csv
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    sys.path.insert(0, str(REPO))
    from dssdn_edge.audio import load_audio
    from dssdn_edge.device import default_cache, emulate
    from dssdn_edge.device.agreement import agreement
    from dssdn_edge.device.build_report import loudest_second
    from dssdn_edge.errors import DssdnError
    from dssdn_edge.fileio import write_json
    from dssdn_edge.frontend import FrontendConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--export", type=Path, required=True)
    ap.add_argument("--board", choices=["rpi4", "rpi5"], default="rpi4")
    ap.add_argument("--runtime", choices=["tflite-runtime", "litert"], default="tflite-runtime")
    ap.add_argument("--clips", type=int, default=80)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "esc50_16k")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    try:
        meta = args.data / "metadata.csv"
        if not meta.is_file():
            raise DssdnError(f"{meta}: not found (ESC-50 16 kHz copy)")
        with meta.open() as fh:
            rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
        rows = rows[:: max(1, len(rows) // args.clips)][: args.clips]
        cfg = FrontendConfig()
        clips = [loudest_second(load_audio(args.data / r["filename"], cfg.sample_rate), cfg) for r in rows]
        board = emulate(args.board, default_cache() / "devices" / args.board)
        with tempfile.TemporaryDirectory(prefix="dssdn-agree-") as tmp:
            res = agreement(board, args.runtime, args.export, clips, Path(tmp))
    except DssdnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    dev = res["device"]
    print(f"{board.label}\n{args.runtime} {dev['runtimes'][args.runtime]}, numpy {dev['numpy']} on both sides; "
          f"{len(clips)} fold-5 clips (loudest second)")
    print(f"features (each side's numpy): max |device - x86| = {res['features_max_abs']:.3g}")
    for key, m in res["models"].items():
        if "max_steps" in m:
            hist = m["steps_histogram"]
            total = sum(hist)
            spread = ", ".join(f"{100 * c / total:.2f} % {k} step(s)" for k, c in enumerate(hist) if k and c)
            print(f"{key}: int8 max {m['max_steps']} step(s) ({spread or 'bit-identical'}); top-1 differs on "
                  f"{m['top1_flips']}/{m['clips']} clips (x86 margin there: {m['flip_margins']} steps)")
        else:
            print(f"{key}: fp32 max |diff| {m['max_abs']:.2g}; top-1 differs on {m['top1_flips']}/{m['clips']}")
    if args.json:
        write_json(args.json, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
