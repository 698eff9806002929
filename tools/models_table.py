"""Print the tables of shipped models from what the runs and exports recorded (nothing typed by hand).

    python tools/models_table.py [--exports exports] [--artifacts] [--docs]

The models table stands in README.md and docs/models-and-training.md (``--docs``: its links relative to
docs/); the per-file table (``--artifacts``) in docs/export-and-int8.md.

Reads models/<name>.json (the training sidecar: fold-5 accuracy, epochs, wall time) and
exports/<name>/manifest.json (written by ``dssdn-edge export``: int8 accuracy, agreement, sizes, TFLM arena);
params and MACs are measured here with the DCASE/NeSsi convention. ``--artifacts``: every exported file's
fold-5 accuracy and agreement with the fp32 torch model instead.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dssdn_edge.complexity import measure  # noqa: E402
from dssdn_edge.pretrained import load_pretrained  # noqa: E402

NAMES = ("dssdn-small", "dssdn-middle", "dssdn-large", "resnet")


def row(name: str, exports: Path, models_link: str = "models") -> str:
    ck = load_pretrained(name)
    c = measure(ck.model, ck.frontend_config)
    meta = json.loads((REPO / "models" / f"{name}.json").read_text())
    t = meta.get("training", {})
    cfg = ck.model_config
    design = f"{cfg.operator.upper()} {list(cfg.widths)}" if cfg.operator else f"ResNet {list(cfg.widths)}"
    manifest = json.loads((exports / name / "manifest.json").read_text())
    art = manifest["artifacts"][f"{name}.int8.tflite"]
    q = art["quality"]
    arena = manifest["artifacts"].get("mcu/model_data.cc", {}).get("tflm", {}).get("arena_bytes")
    teacher = "AudioSet (EfficientAT mn04) logits" if t.get("teacher_logits") else (t.get("teacher") or "none")
    seconds = t.get("seconds")
    training = f"{t['epochs']} epochs, {seconds / 60:.0f} min" if seconds and t.get("epochs") else "see card"
    return (f"| [{name}]({models_link}/{name}.md) | {design} | {c.params:,} | {c.macs / 1e6:.2f} M | "
            f"**{100 * meta['metrics']['test_accuracy']:.2f} %** | {100 * q['accuracy']['value']:.2f} % | "
            f"{100 * q['clip_top1_agreement']:.2f} % / {100 * q['top1_agreement']:.2f} % | "
            f"{art['bytes'] / 1024:.1f} KiB | {arena / 1024:.1f} KiB | {teacher} | {training} |")


ARTIFACTS = (("{n}.tflite", "TFLite fp32"), ("{n}.onnx", "ONNX fp32"), ("{n}.int8.tflite", "TFLite int8"),
             ("{n}.int8.onnx", "ONNX int8 (QDQ)"), ("{n}.audio.tflite", "phone (audio in)"))


def artifacts_table(exports: Path) -> list[str]:
    lines = ["| model | file | bytes | fold 5 | vs fp32 torch (pt) | same top-1 as fp32, clips / windows |",
             "| --- | --- | ---: | ---: | ---: | ---: |"]
    for name in NAMES:
        arts = json.loads((exports / name / "manifest.json").read_text())["artifacts"]
        for pattern, what in ARTIFACTS:
            art = arts.get(pattern.format(n=name))
            if art is None:
                continue
            q = art["quality"]
            gain = round(-q["accuracy"]["drop_points"], 2) + 0.0  # + 0.0: no "-0.00"
            lines.append(f"| {name} | {what} | {art['bytes']:,} | {100 * q['accuracy']['value']:.2f} % | "
                         f"{gain:+.2f} | {100 * q['clip_top1_agreement']:.2f} % / "
                         f"{100 * q['top1_agreement']:.2f} % |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--exports", type=Path, default=REPO / "exports")
    ap.add_argument("--artifacts", action="store_true", help="the per-file table of the exports instead")
    ap.add_argument("--docs", action="store_true", help="model-card links relative to docs/ (not the README)")
    args = ap.parse_args()
    if args.artifacts:
        print("\n".join(artifacts_table(args.exports)))
        return
    print("| model | operator, block widths | params | MACs / 1-s window | fold 5, fp32 | fold 5, int8 .tflite | "
          "int8 = fp32 top-1, clips / windows | int8 .tflite | TFLM arena | teacher | training (1 CPU thread) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |")
    for name in NAMES:
        print(row(name, args.exports, "../models" if args.docs else "models"))


if __name__ == "__main__":
    main()
