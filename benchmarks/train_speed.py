"""Training throughput: each DSSDN size against the previous design, and data-parallel training on 2 ranks.

    python benchmarks/train_speed.py [--steps 12] [--rounds 3] [--dp-rounds 5] [--batch 64]
                                     [--sections arch,parallel] [--out benchmarks/results]

One training step = the real data path of ``dssdn-edge train`` (crops gathered from cached ESC-50
features, gain, normalisation, masks, mixup, distillation targets) + forward + backward + AdamW step, one
intra-op thread. "previous" is the architecture shipped before (1×1 stem at full resolution, pooling after
the output 1×1, NCHW); "now" is the shipped one (strided stem, pooling first, channels_last). Both run in
this process, interleaved round by round, so the ratio is fair on a shared machine.

The data-parallel section times dssdn-small's step (global batch ``--batch``) three ways, interleaved round
by round: 1 rank × 1 thread and 1 rank × 2 threads in this process, and 2 ranks × 1 thread (``torch.distributed``,
gloo, global BatchNorm, one gradient all-reduce per step, exactly ``dssdn-edge train --nproc 2``'s step) in two
worker processes started for each round. The workers also time the all-reduces alone (after a barrier), so the
communication cost per step is separated from waiting for a descheduled peer. Writes train_speed.{json,md};
exits 1 if dssdn-small misses the 3× architecture target or 2 ranks miss 1.7× one rank × one thread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
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

from dssdn_edge import distributed as dd  # noqa: E402
from dssdn_edge.bench.sysinfo import collect_local  # noqa: E402
from dssdn_edge.data import Dataset, clip_features  # noqa: E402
from dssdn_edge.fileio import write_json, write_text  # noqa: E402
from dssdn_edge.frontend import Frontend, Normalization  # noqa: E402
from dssdn_edge.model import ModelConfig, build_model, config_for  # noqa: E402
from dssdn_edge.teacher import TeacherTable  # noqa: E402
from dssdn_edge.train_config import TrainConfig  # noqa: E402
from dssdn_edge.train_steps import Batcher, train_step  # noqa: E402

SIZES = ("dssdn-small", "dssdn-middle", "dssdn-large")
TARGET = 3.0  # dssdn-small: now / previous windows per second
DP_TARGET = 1.7  # dssdn-small: 2 ranks × 1 thread / 1 rank × 1 thread


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


def training_data(batch: int) -> Batcher:
    dataset = Dataset.load().with_folds((1, 2, 3), None, None).subset(4)
    fe = Frontend()
    feats = clip_features(dataset.split("train"), fe, desc="features")
    seg = fe.config.segment_frames
    norm = Normalization.fit(feats.gather(feats.windows(seg, seg), seg))
    cfg = TrainConfig(batch_size=batch)
    # distillation targets exercise the same code as a real run; their values do not change the speed
    n_grid = int(feats.lengths.max() - seg) // cfg.window_stride + 1
    rng = np.random.default_rng(0)
    teacher = TeacherTable(rng.standard_normal((len(feats), n_grid, len(dataset.labels))).astype(np.float32),
                           cfg.window_stride, {})
    return Batcher(cfg, feats, norm, seg, float(np.log10(fe.config.log_eps)), teacher)


def architecture(args: argparse.Namespace, batcher: Batcher) -> dict:
    torch.set_num_threads(1)
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
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "loadavg": load,
            "steps_per_round": args.steps, "rounds": args.rounds, "rows": rows,
            "target": {"what": f"dssdn-small now / previous >= {TARGET}", "measured": small["ratio"],
                       "pass": small["ratio"] >= TARGET}}


def previous_architecture(path: Path) -> dict | None:
    """The architecture section of an earlier result file (this file's older layout had it at the top level)."""
    if not path.is_file():
        return None
    old = json.loads(path.read_text())
    arch = old.get("architecture") or ({k: old[k] for k in ("steps_per_round", "rounds", "rows", "target")}
                                       if "rows" in old else None)
    if arch is not None:
        arch.setdefault("date", old.get("date"))
        arch.setdefault("loadavg", (old.get("system") or {}).get("loadavg"))
    return arch


# ------------------------------------------------------------------------------ data parallel
def dp_steps(batcher: Batcher, steps: int, world: dd.World, batchnorm: str = "global") -> dict:
    """Time ``steps`` training steps of dssdn-small as ``dssdn-edge train`` runs them on ``world``."""
    torch.manual_seed(0)
    model = build_model(config_for("dssdn-small"))
    if world.size > 1 and batchnorm == "global":
        model = dd.sync_batchnorm(model)
    model = model.to(memory_format=torch.channels_last).train()
    sync = dd.GradientSync(world, list(model.parameters()))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    plan = batcher.epoch_plan(np.random.default_rng(0))
    comm = {"s": 0.0, "n": 0}
    plain = dd.all_reduce_sum

    def timed(t: torch.Tensor) -> None:  # every all-reduce of the step: BatchNorm statistics and gradients
        t0 = time.perf_counter()
        plain(t)
        comm["s"] += time.perf_counter() - t0
        comm["n"] += 1

    dd.all_reduce_sum = timed
    times, comm_s, grad_s, calls = [], 0.0, 0.0, 0
    try:
        for i in range(steps + 2):
            t0 = time.perf_counter()
            c0, g0, n0 = comm["s"], sync.seconds, comm["n"]
            gen = dd.seed_step(0, 1, i, world.rank)
            x, y, t = batcher.batch(world.shard(plan[i % len(plan)]), gen)
            loss, _ = train_step(model, x, y, t, batcher.cfg, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            sync([loss.item()])
            opt.step()
            if i >= 2:  # two warm-up steps
                times.append(time.perf_counter() - t0)
                comm_s += comm["s"] - c0
                grad_s += sync.seconds - g0
                calls = comm["n"] - n0
    finally:
        dd.all_reduce_sum = plain
    n = len(times)
    return {"windows_per_s": batcher.cfg.batch_size * n / sum(times), "step_ms": 1e3 * sum(times) / n,
            "allreduce_ms_per_step": 1e3 * comm_s / n, "grad_allreduce_ms_per_step": 1e3 * grad_s / n,
            "allreduces_per_step": calls, "grad_floats": sum(p.numel() for p in model.parameters())}


def allreduce_alone(floats: int, repeats: int = 50) -> float:
    """Milliseconds per all-reduce of ``floats`` float32 with both ranks ready (after a barrier)."""
    from torch import distributed as dist

    buf = torch.zeros(floats)
    times = []
    for _ in range(repeats):
        dist.barrier()
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def worker(args: argparse.Namespace) -> int:
    """One rank of the 2-rank measurement (started by :func:`two_ranks`); rank 0 prints the result as JSON."""
    torch.set_num_threads(1)
    batcher = training_data(args.batch)
    world = dd.world_from_env()
    result = dp_steps(batcher, args.steps, world, args.batchnorm)
    result["allreduce_alone_ms"] = {"gradients": allreduce_alone(result["grad_floats"] + 1),
                                    "batchnorm (129 floats)": allreduce_alone(129)}
    if world.main:
        print("RESULT " + json.dumps(result), flush=True)
    dd.close(world)
    return 0


def two_ranks(args: argparse.Namespace, batchnorm: str) -> dict:
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(dd.free_port()), "WORLD_SIZE": "2",
           "DSSDN_PROGRESS": "0", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, __file__, "--worker", "--steps", str(args.steps), "--batch", str(args.batch),
           "--batchnorm", batchnorm]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r)}, stdout=subprocess.PIPE, text=True) for r in range(2)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise SystemExit(f"error: a 2-rank worker failed (exit {[p.returncode for p in procs]})")
    line = next(ln for ln in outs[0].splitlines() if ln.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def parallel(args: argparse.Namespace, batcher: Batcher) -> dict:
    runs: dict[str, list[dict]] = {"1 rank × 1 thread": [], "1 rank × 2 threads": [], "2 ranks × 1 thread": [],
                                   "2 ranks × 1 thread, local BatchNorm": []}
    loads = []
    for r in range(args.dp_rounds):
        loads.append(os.getloadavg()[0])
        for threads in (1, 2):
            torch.set_num_threads(threads)
            runs[f"1 rank × {threads} thread{'s' if threads > 1 else ''}"].append(
                dp_steps(batcher, args.steps, dd.World()))
        runs["2 ranks × 1 thread"].append(two_ranks(args, "global"))
        runs["2 ranks × 1 thread, local BatchNorm"].append(two_ranks(args, "local"))
        line = ", ".join(f"{k} {v[-1]['windows_per_s']:.0f}" for k, v in runs.items())
        print(f"round {r + 1}/{args.dp_rounds}: windows/s {line}", flush=True)
    torch.set_num_threads(1)
    med = {k: statistics.median(x["windows_per_s"] for x in v) for k, v in runs.items()}
    two = runs["2 ranks × 1 thread"]
    ratios = [b["windows_per_s"] / a["windows_per_s"] for a, b in zip(runs["1 rank × 1 thread"], two, strict=True)]
    speedup = med["2 ranks × 1 thread"] / med["1 rank × 1 thread"]
    comm = {
        "allreduce_ms_per_step": statistics.median(x["allreduce_ms_per_step"] for x in two),
        "grad_allreduce_ms_per_step": statistics.median(x["grad_allreduce_ms_per_step"] for x in two),
        "step_ms": statistics.median(x["step_ms"] for x in two),
        "allreduces_per_step": two[0]["allreduces_per_step"],
        "grad_floats": two[0]["grad_floats"],
        "alone_gradients_ms": statistics.median(x["allreduce_alone_ms"]["gradients"] for x in two),
        "alone_batchnorm_ms": statistics.median(x["allreduce_alone_ms"]["batchnorm (129 floats)"] for x in two),
    }
    return {"model": "dssdn-small", "batch": args.batch, "steps_per_round": args.steps, "rounds": args.dp_rounds,
            "loadavg_1min_per_round": loads, "windows_per_s": med, "speedup_per_round": ratios, "comm": comm,
            "runs": runs, "target": {"what": f"2 ranks × 1 thread / 1 rank × 1 thread >= {DP_TARGET}",
                                     "measured": speedup, "pass": speedup >= DP_TARGET}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dp-rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--sections", default="arch,parallel")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batchnorm", default="global", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    torch.set_num_threads(1)
    batcher = training_data(args.batch)
    sections = set(args.sections.split(","))
    result: dict = {"date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"), "system": collect_local().to_dict(),
                    "torch": torch.__version__, "batch": args.batch}
    if "arch" in sections:
        result["architecture"] = architecture(args, batcher)
    elif (earlier := previous_architecture(args.out / "train_speed.json")) is not None:
        result["architecture"] = earlier  # kept from the run that measured it (its date is in the section)
    if "parallel" in sections:
        result["parallel"] = parallel(args, batcher)
    result["system"]["loadavg_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    args.out.mkdir(parents=True, exist_ok=True)
    write_json(args.out / "train_speed.json", result)
    write_text(args.out / "train_speed.md", markdown(result))
    targets = [result[k]["target"] for k in ("architecture", "parallel") if k in result]
    passed = all(t["pass"] for t in targets)
    print(f"wrote {args.out / 'train_speed.json'} and train_speed.md; targets "
          + ", ".join(f"{t['what']}: {t['measured']:.2f}× {'PASS' if t['pass'] else 'FAIL'}" for t in targets))
    return 0 if passed else 1


def markdown(result: dict) -> str:
    sys_ = result["system"]
    cpu = sys_.get("cpu_model") or sys_.get("cpu") or "CPU"
    lines = ["# Training throughput", "",
             f"{result['date']} · {cpu}, {sys_.get('cores')} cores · torch {result['torch']} · "
             f"batch {result['batch']} · "
             f"1-min load average at the start {sys_.get('loadavg')}, at the end {sys_.get('loadavg_end')} "
             "(the machine is shared: other engineers' builds and tests ran during the measurement)", ""]
    arch = result.get("architecture")
    if arch:
        lines += [
            "## Architecture: today's design against the previous one (1 intra-op thread)", "",
            f"Measured {arch.get('date')} (1-min load average {arch.get('loadavg')}); median of {arch['rounds']} "
            f"interleaved rounds of {arch['steps_per_round']} steps. A step is the real "
            "data path of `dssdn-edge train` (crops from cached ESC-50 features, gain, normalisation, masks, mixup, "
            "distillation targets) + forward + backward + AdamW. *previous*: the design shipped before (1×1 stem at "
            "full resolution, pooling after the output 1×1, NCHW); *now*: the shipped design (strided (3, 2) stem, "
            "pooling first, channels_last).", "",
            "| model | previous windows/s | now windows/s | now / previous |", "|---|---:|---:|---:|"]
        for r in arch["rows"]:
            lines.append(f"| {r['name']} | {r['previous_windows_per_s']:.0f} | {r['now_windows_per_s']:.0f} | "
                         f"{r['ratio']:.2f}× |")
        lines.append("")
    par = result.get("parallel")
    if par:
        w, c = par["windows_per_s"], par["comm"]
        base = w["1 rank × 1 thread"]
        loads = ", ".join(f"{x:.1f}" for x in par["loadavg_1min_per_round"])
        lines += [
            "## Data-parallel training (`dssdn-edge train --nproc N`)", "",
            f"dssdn-small, global batch {par['batch']}, the step of `dssdn-edge train` (as above; 2 ranks: each "
            f"takes {par['batch'] // 2} windows, BatchNorm statistics over the global batch, one gradient all-reduce "
            f"per step, gloo on 127.0.0.1). Median of {par['rounds']} interleaved rounds of {par['steps_per_round']} "
            f"steps; 1-min load average at the start of each round: {loads}.", "",
            "| configuration | windows/s | vs 1 rank × 1 thread |", "|---|---:|---:|"]
        for k, v in w.items():
            lines.append(f"| {k} | {v:.0f} | {v / base:.2f}× |")
        per_round = ", ".join(f"{x:.2f}×" for x in par["speedup_per_round"])
        lines += [
            "", f"2 ranks / 1 rank × 1 thread, per round: {per_round}.", "",
            "Communication on 2 ranks, per step (median over rounds):", "",
            "| | ms |", "|---|---:|",
            f"| whole step (2 ranks) | {c['step_ms']:.1f} |",
            f"| all {c['allreduces_per_step']} all-reduces inside the step (BatchNorm statistics forward + backward, "
            f"gradients), including waiting for the other rank | {c['allreduce_ms_per_step']:.1f} |",
            f"| of which the gradient all-reduce ({c['grad_floats']:,} floats + 4 statistics) | "
            f"{c['grad_allreduce_ms_per_step']:.1f} |",
            f"| one gradient all-reduce alone (both ranks ready) | {c['alone_gradients_ms']:.2f} |",
            f"| one BatchNorm all-reduce alone (≤ 129 floats, both ranks ready) | {c['alone_batchnorm_ms']:.2f} |",
            "", contention_note(par), "", scaling_note(par), ""]
    lines += ["| target | measured | result |", "|---|---:|---|"]
    for key in ("architecture", "parallel"):
        if key in result:
            t = result[key]["target"]
            lines.append(f"| {t['what']} | {t['measured']:.2f}× | {'PASS' if t['pass'] else 'FAIL'} |")
    lines.append("")
    return "\n".join(lines)


def contention_note(par: dict) -> str:
    """Why 2 ranks fall short (or not) on this run: how much of the step went to waiting inside all-reduces."""
    c, w = par["comm"], par["windows_per_s"]
    loads = par["loadavg_1min_per_round"]
    wait = c["allreduce_ms_per_step"] - c["allreduces_per_step"] * c["alone_batchnorm_ms"]
    return (f"Reading: {c['allreduce_ms_per_step']:.0f} of the {c['step_ms']:.0f} ms of a 2-rank step were spent "
            f"inside all-reduces, of which the transfers themselves account for about "
            f"{c['allreduces_per_step'] * c['alone_batchnorm_ms']:.0f} ms ({c['allreduces_per_step']} × "
            f"{c['alone_batchnorm_ms']:.2f} ms); the other ~{max(wait, 0):.0f} ms is one rank waiting for the other "
            f"to be scheduled. With a 1-min load average of {min(loads):.1f}–{max(loads):.1f} on "
            "2 cores, two ranks do not get two cores: the speed-up measures the machine's spare capacity, not the "
            f"code. `--batchnorm local` (1 synchronisation per step instead of {c['allreduces_per_step']}) ran at "
            f"{w['2 ranks × 1 thread, local BatchNorm']:.0f} windows/s against {w['2 ranks × 1 thread']:.0f}: the "
            "ranks wait for CPU time, not for synchronisation points. 1 rank × 2 threads collapses under the same "
            "load (intra-op threads wait for each other at every operator), which is why training defaults to one "
            "thread per process. On an idle machine expect 2 ranks near the model below.")


def scaling_note(par: dict) -> str:
    """What the measured costs predict past 2 ranks (a model, said to be one)."""
    c = par["comm"]
    t1 = 1e3 * par["batch"] / par["windows_per_s"]["1 rank × 1 thread"]  # ms of compute per global batch
    n_ar = c["allreduces_per_step"]
    lat = c["alone_batchnorm_ms"]
    rows = []
    for n in (2, 4, 8, 16):
        comm = n_ar * lat * max(1.0, np.log2(n))  # latency-bound all-reduces grow with the tree depth
        step = t1 / n + comm
        rows.append(f"{n} ranks: {t1 / step:.1f}× ({100 * t1 / step / n:.0f} % efficiency)")
    return ("Expected past 2 ranks (a model from these measurements, not a measurement): with one core per rank and "
            f"the global batch fixed at {par['batch']}, compute per rank shrinks as 1/N "
            f"({t1:.0f} ms / N) while the {n_ar} latency-bound all-reduces per step do not "
            f"({lat:.2f} ms each here on one machine, growing with log2 N): " + "; ".join(rows) + ". "
            "Across machines each all-reduce costs a network round trip (~0.1–0.5 ms on Ethernet) instead, so the "
            "BatchNorm all-reduces dominate past ~4 ranks; there, raise the global batch with N (more work per "
            "all-reduce) rather than split a batch of 64 ever thinner.")


if __name__ == "__main__":
    sys.exit(main())
