"""Lay out ESC-50's ten ESC-10 classes as a user's dataset would look: one folder per class, plus a CSV.

    python tools/make_esc10.py DEST [--data ../shared/data/esc50_16k] [--copy]

writes DEST/<label>/<clip>.flac (symlinks to the ../shared audio unless --copy) and DEST/esc10.csv with
``filename,label,fold`` (ESC-50's own folds: fold 5 is the test set, fold 4 val). Fold 5 matters for a fair
fine-tuning number: the shipped weights were trained on folds 1–4, ESC-10 clips included, so only fold-5 clips
are new to them. ``--by-group`` writes ``filename,label,group`` instead (the clip's source recording, so that
takes of one recording stay in one split of a random 80/10/10 split). ``dssdn-edge train --data DEST`` reads
the folders (a random stratified split, which mixes the shipped weights' training clips into the test split).
Nothing is written into the repository.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dssdn_edge.data import default_data_root  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--data", type=Path, default=default_data_root())
    ap.add_argument("--copy", action="store_true", help="copy the audio instead of symlinking it")
    ap.add_argument("--by-group", action="store_true", help="a group column (source recording) instead of folds")
    args = ap.parse_args()
    meta = args.data / "metadata.csv"
    if not meta.is_file():
        print(f"error: {meta}: ESC-50 metadata not found", file=sys.stderr)
        return 1
    if args.dest.exists() and any(args.dest.iterdir()):
        print(f"error: {args.dest}: exists and is not empty", file=sys.stderr)
        return 1
    with meta.open(newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["esc10"] == "True"]
    out_rows = []
    for r in rows:
        src = (args.data / r["filename"]).resolve()
        dst = args.dest / r["label"] / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if args.copy:
            shutil.copyfile(src, dst)
        else:
            dst.symlink_to(src)
        key, value = ("group", r["src_file"]) if args.by_group else ("fold", r["fold"])
        out_rows.append({"filename": f"{r['label']}/{src.name}", "label": r["label"], key: value})
    with (args.dest / "esc10.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["filename", "label", "group" if args.by_group else "fold"])
        writer.writeheader()
        writer.writerows(out_rows)
    print(f"wrote {len(out_rows)} clips of {len({r['label'] for r in out_rows})} classes into {args.dest} "
          f"(and {args.dest / 'esc10.csv'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
