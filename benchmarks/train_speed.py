"""Training throughput: windows per second of each DSSDN size, today's design against the previous one.

    python benchmarks/train_speed.py [--steps 12] [--rounds 3] [--batch 64] [--out benchmarks/results]

One training step = the real data path of ``dssdn-edge train`` (crops gathered from cached ESC-50
features, gain, normalisation, masks, mixup, distillation targets) + forward + backward + AdamW step, one
intra-op thread. "previous" is the architecture shipped before (1×1 stem at full resolution, pooling after
the output 1×1, NCHW); "now" is the shipped one (strided stem, pooling first, channels_last). Both run in
this process, interleaved round by round, so the ratio is fair on a shared machine. Writes
train_speed.{json,md} and exits 1 if dssdn-small misses the 3× target.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dssdn_edge.bench.sysinfo import collect_local  # noqa: E402
from dssdn_edge.data import Dataset, clip_features  # noqa: E402
from dssdn_edge.fileio import write_json, write_text  # noqa: E402
from dssdn_edge.frontend import Frontend, Normalization  # noqa: E402
from dssdn_edge.model import ModelConfig, build_model, config_for  # noqa: E402
from dssdn_edge.teacher import TeacherTable  # noqa: E402
from dssdn_edge.train import Batcher, TrainConfig, train_step  # noqa: E402

SIZES = ("dssdn-small", "dssdn-middle", "dssdn-large")
TARGET = 3.0  # dssdn-small: now / previous windows per second


def previous_config(name: str) -> ModelConfig:
    """The design shipped before this change: full-resolution 1×1 stem, pool after the output 1×1."""
    return replace(config_for(name), stem_kernel=(1, 1), stem_stride=(1, 1), time_pool=(), pool_first=False)


def measure(model_cfg: ModelConfig, channels_last: bool, batcher: Batcher, steps: int, seed: int) -> float:
    torch.manual_seed(seed)
    cfg = replace(batcher.cfg, channels_last=channels_last)
    model = build_model(model_cfg)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(seed)
    plan = batcher.epoch_plan(np.random.default_rng(seed))
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        x, y, t = batcher.batch(plan[i % len(plan)], gen)
        loss, _ = train_step(model, x, y, t, cfg, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 2:  # two warm-up steps
            times.append(time.perf_counter() - t0)
    return len(y) * len(times) / sum(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    torch.set_num_threads(1)

    dataset = Dataset.load().with_folds((1, 2, 3), None, None).subset(4)
    fe = Frontend()
    feats = clip_features(dataset.split("train"), fe, desc="features")
    seg = fe.config.segment_frames
    norm = Normalization.fit(feats.gather(feats.windows(seg, seg), seg))
    cfg = TrainConfig(batch_size=args.batch)
    # distillation targets exercise the same code as a real run; their values do not change the speed
    n_grid = int(feats.lengths.max() - seg) // cfg.window_stride + 1
    rng = np.random.default_rng(0)
    teacher = TeacherTable(rng.standard_normal((len(feats), n_grid, len(dataset.labels))).astype(np.float32),
                           cfg.window_stride, {})
    batcher = Batcher(cfg, feats, norm, seg, float(np.log10(fe.config.log_eps)), teacher)

    rows = []
    for name in SIZES:
        runs: dict[str, list[float]] = {"previous": [], "now": []}
        for r in range(args.rounds):
            runs["previous"].append(measure(previous_config(name), False, batcher, args.steps, r))
            runs["now"].append(measure(config_for(name), True, batcher, args.steps, r))
        prev, now = statistics.median(runs["previous"]), statistics.median(runs["now"])
        rows.append({"name": name, "previous_windows_per_s": prev, "now_windows_per_s": now, "ratio": now / prev,
                     "rounds": runs})
        print(f"{name}: previous {prev:.0f} windows/s, now {now:.0f} windows/s ({now / prev:.2f}×)", flush=True)

    small = next(r for r in rows if r["name"] == "dssdn-small")
    passed = small["ratio"] >= TARGET
    info = collect_local().to_dict()
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "system": info,
        "torch": torch.__version__,
        "threads": 1,
        "batch": args.batch,
        "steps_per_round": args.steps,
        "rounds": args.rounds,
        "rows": rows,
        "target": {"what": f"dssdn-small now / previous >= {TARGET}", "measured": small["ratio"], "pass": passed},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "train_speed.json", result)
    write_text(args.out / "train_speed.md", markdown(result))
    print(f"wrote {args.out / 'train_speed.json'} and train_speed.md; target {'PASS' if passed else 'FAIL'}")
    return 0 if passed else 1


def markdown(result: dict) -> str:
    sys_ = result["system"]
    cpu = sys_.get("cpu_model") or sys_.get("cpu") or "CPU"
    lines = [
        "# Training throughput",
        "",
        f"{result['date']} · {cpu} · torch {result['torch']} · 1 intra-op thread · batch {result['batch']} · "
        f"median of {result['rounds']} interleaved rounds of {result['steps_per_round']} steps",
        "",
        "A step is the real data path of `dssdn-edge train` (crops from cached ESC-50 features, gain, "
        "normalisation, masks, mixup, distillation targets) + forward + backward + AdamW. *previous*: the "
        "design shipped before (1×1 stem at full resolution, pooling after the output 1×1, NCHW); *now*: the "
        "shipped design (strided (3, 2) stem, pooling first, channels_last).",
        "",
        "| model | previous windows/s | now windows/s | now / previous |",
        "|---|---:|---:|---:|",
    ]
    for r in result["rows"]:
        lines.append(f"| {r['name']} | {r['previous_windows_per_s']:.0f} | {r['now_windows_per_s']:.0f} | "
                     f"{r['ratio']:.2f}× |")
    t = result["target"]
    lines += ["", "| target | measured | result |", "|---|---:|---|",
              f"| {t['what']} | {t['measured']:.2f}× | {'PASS' if t['pass'] else 'FAIL'} |", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
