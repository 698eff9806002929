"""Bench results as JSON, Markdown, PNG plots and a console table; ratios taken from one run.

Ratios (int8 vs fp32, ONNX Runtime vs LiteRT, torch eager vs LiteRT int8) are only meaningful between
numbers measured in the same run on the same machine state, so they are computed here from one result
and stored with it instead of being assembled later from different runs. Estimates are printed under
their own heading with the word ESTIMATE and their source, never mixed into the measured table.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .stats import ratio

TFLITE_RUNTIMES = ("litert", "tflite-runtime")


# ------------------------------------------------------------------------------------------ ratios
def find(result: dict[str, Any], runtime: str, precision: str, ext: str | None = None) -> dict[str, Any] | None:
    """The first successful entry for (runtime, precision[, file extension])."""
    for e in result.get("results", []):
        if e.get("error") or e.get("runtime") != runtime or e.get("precision") != precision:
            continue
        if ext is None or str(e.get("artifact", "")).endswith(ext):
            return e
    return None


def p50(entry: dict[str, Any] | None, key: str = "latency_ms") -> float | None:
    return None if entry is None else entry.get(key, {}).get("p50")


def ratios(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Median-latency ratios (model only) between runtimes of this run; a value < 1 means 'faster'."""
    tfl = next(
        (r for r in TFLITE_RUNTIMES if find(result, r, "fp32", ".tflite") or find(result, r, "int8")),
        "litert",
    )
    t_fp32, t_int8 = find(result, tfl, "fp32", ".tflite"), find(result, tfl, "int8", ".tflite")
    pairs = {
        f"{tfl} int8 / {tfl} fp32": (t_int8, t_fp32),
        f"onnxruntime fp32 / {tfl} fp32": (find(result, "onnxruntime", "fp32", ".onnx"), t_fp32),
        f"onnxruntime int8 / {tfl} int8": (find(result, "onnxruntime", "int8", ".onnx"), t_int8),
        f"torch eager / {tfl} int8": (find(result, "torch", "fp32"), t_int8),
        f"torch eager / {tfl} fp32": (find(result, "torch", "fp32"), t_fp32),
    }
    out = {}
    for name, (num, den) in pairs.items():
        value = ratio(p50(num), p50(den))
        if value is not None:
            out[name] = {"ratio": value, "numerator_p50_ms": p50(num), "denominator_p50_ms": p50(den)}
    return out


# ---------------------------------------------------------------------------------------- writing
def _mb(n: int | None) -> str:
    if n is None:
        return "n/a"
    return f"{n / 1024:.1f} KiB" if n < 1 << 20 else f"{n / (1 << 20):.2f} MiB"


def _count(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) else "n/a"


def _f(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def markdown(result: dict[str, Any]) -> str:
    exp, s = result.get("export", {}), result.get("settings", {})
    dev = result.get("device", {})
    lines = [
        f"# Benchmark: {exp.get('name')} on {dev.get('name', dev.get('kind', '?'))} ({dev.get('mode', '?')})",
        "",
    ]
    if result.get("interrupted"):
        lines += ["**Interrupted (Ctrl-C): partial results.**", ""]
    lines += [
        f"- created: {result.get('created', '')}",
        f"- export: `{exp.get('dir')}` (manifest sha256 {str(exp.get('manifest_sha256'))[:12]}…, verified)",
        f"- MACs per 1-s window: {_count(exp.get('complexity', {}).get('macs'))} "
        f"({exp.get('complexity', {}).get('convention', 'convention n/a')})",
        f"- threads {s.get('threads')}, runs {s.get('runs')} after {s.get('warmup')} warm-up; medians",
    ]
    for when in ("before", "after"):
        info = result.get("sysinfo", {}).get(when)
        if info:
            lines.append(f"- system {when}: {sys_line(info)}")
    env = result.get("environment", {})
    if env:
        versions = ", ".join(f"{k} {v}" for k, v in result.get("runtimes_available", {}).items())
        lines.append(f"- python {env.get('python')} ({env.get('machine')}), numpy {env.get('numpy')}; {versions}")
    fe = result.get("frontend", {}).get("ms_per_second")
    if result.get("results") or fe:
        lines += [
            "",
            "## Measured latency",
            "",
            f"Front end ({result.get('frontend', {}).get('implementation', 'numpy')}) per 1 s of audio: "
            f"p50 {_f(fe and fe.get('p50'))} ms, p90 {_f(fe and fe.get('p90'))} ms.",
            "",
            "| runtime | artifact | prec | load ms | p50 ms | p90 ms | p99 ms | mean ± std | min | "
            "end to end p50 (1 s audio) | × real time | activation memory |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for e in result.get("results", []):
            if e.get("error"):
                lines.append(
                    f"| {e['runtime']} | {e['artifact']} | {e.get('precision')} | error: {e['error']} ||||||||"
                )
                continue
            lat, e2e, mem = e["latency_ms"], e["e2e_ms"], e.get("activation_memory", {})
            cells = [
                e["runtime"],
                e["artifact"],
                e["precision"],
                f"{e['load_ms']:.1f}",
                f"{lat['p50']:.3f}",
                f"{lat['p90']:.3f}",
                f"{lat['p99']:.3f}",
                f"{lat['mean']:.3f} ± {lat['std']:.3f}",
                f"{lat['min']:.3f}",
                f"{e2e['p50']:.3f} ms",
                f"{e['x_realtime']:.0f}×",
                f"{_mb(mem.get('bytes'))} ({mem.get('kind', 'n/a')})",
            ]
            lines.append("| " + " | ".join(cells) + " |")
        methods = {
            e["activation_memory"]["kind"]: e["activation_memory"]["method"]
            for e in result.get("results", [])
            if e.get("activation_memory", {}).get("kind")
        }
        notes = [f"activation memory, {k}: {m}" for k, m in methods.items()]
        notes += [f"{e['runtime']}: {e['note']}" for e in result.get("results", []) if e.get("note")]
        notes += [
            f"{e['runtime']} {e['artifact']}: {e['runtime_info']['delegate_partitions']} XNNPACK partition(s)"
            for e in result.get("results", [])
            if (e.get("runtime_info") or {}).get("delegate_partitions") is not None
        ]
        notes += [f"torch weights: {e['weights']}" for e in result.get("results", []) if e.get("weights")]
        lines += [""] + [f"- {n}" for n in notes]
    if result.get("ratios"):
        lines += [
            "",
            "## Ratios (same run, median model latency)",
            "",
            "| ratio | value | p50 ms |",
            "|---|---:|---|",
        ]
        for name, r in result["ratios"].items():
            lines.append(f"| {name} | {r['ratio']:.2f} | {r['numerator_p50_ms']:.3f} / {r['denominator_p50_ms']:.3f} |")
    if result.get("estimates"):
        lines += [
            "",
            "## ESTIMATES (not measured)",
            "",
            "| device | precision | threads | ms (range) | source |",
            "|---|---|---:|---|---|",
        ]
        for est in result["estimates"]:
            lines.append(
                f"| {est['device']} | {est['precision']} | {est['threads']} | {est['ms']:.2f} "
                f"({est['low_ms']:.2f}–{est['high_ms']:.2f}) | {est['source']} |"
            )
    if result.get("mcu"):
        lines += _mcu_lines(result["mcu"])
    return "\n".join(lines) + "\n"


def sys_line(info: dict[str, Any]) -> str:
    """One line on the measuring machine (a ``SysInfo`` as stored in a result)."""
    parts = [
        info.get("device_model") or info.get("cpu_model") or info.get("machine"),
        f"{info.get('cores')} cores",
        f"SIMD {' '.join(info.get('simd') or []) or 'n/a'}",
        f"governor {info.get('governor') or 'n/a'}",
    ]
    if info.get("temperature_c") is not None:
        parts.append(f"{info['temperature_c']:.1f} °C")
    if info.get("throttled") is not None:
        parts.append(f"throttled {info['throttled']} {info.get('throttle_flags') or ''}")
    if info.get("loadavg"):
        parts.append(f"load {info['loadavg']}")
    return "; ".join(str(p) for p in parts)


def _mcu_lines(mcu: dict[str, Any]) -> list[str]:
    fp = mcu["footprint"]
    lines = [
        "",
        "## Microcontroller fit",
        "",
        f"- flash {_mb(fp['flash_bytes'])} = model {_mb(fp['model_bytes'])} + front-end tables "
        f"{_mb(fp['frontend_tables_bytes'])} + code {_mb(fp['code_bytes'])} (allowance)",
        f"- RAM {_mb(fp['ram_bytes'])} = TFLM arena {_mb(fp['arena_bytes'])} (measured) + front end "
        f"{_mb(fp['frontend_ram_bytes'])}",
        f"- ops: {', '.join(fp['ops'])}",
        "",
    ]
    lines += [f"  - {k}: {v}" for k, v in fp["sources"].items()]
    lines += ["", "| board | flash | RAM | arena in largest block | fits |", "|---|---|---|---|---|"]
    for f in mcu["fits"]:
        lines.append(
            f"| {f['board']} | {'ok' if f['flash_ok'] else 'NO'} ({_mb(f['flash_headroom'])} left) | "
            f"{'ok' if f['ram_ok'] else 'NO'} ({_mb(f['ram_headroom'])} left) | "
            f"{'ok' if f['arena_block_ok'] else 'NO'} | {'yes' if f['fits'] else 'no'} |"
        )
    return lines


def write_json(result: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1, default=str) + "\n")
    os.replace(tmp, path)
    return path


def write_report(result: dict[str, Any], out_dir: Path, stem: str = "bench") -> list[Path]:
    """bench.json, bench.md and (with measured latencies) bench_latency.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(result, out_dir / f"{stem}.json")]
    md = out_dir / f"{stem}.md"
    md.write_text(markdown(result))
    paths.append(md)
    if any(not e.get("error") for e in result.get("results", [])):
        paths.append(plot_latency([result], out_dir / f"{stem}_latency.png"))
    return paths


# ------------------------------------------------------------------------------------------ plots
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(results: list[dict[str, Any]], path: Path) -> Path:
    """Box plot of per-call model latency, one box per (model,) runtime and artifact, log scale."""
    plt = _pyplot()
    labels, data = [], []
    for res in results:
        prefix = f"{res.get('export', {}).get('name')}\n" if len(results) > 1 else ""
        for e in res.get("results", []):
            if not e.get("error") and e.get("samples_ms"):
                labels.append(f"{prefix}{e['runtime']}\n{e['precision']}")
                data.append(e["samples_ms"])
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(data) + 2), 4.5))
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=7, rotation=0 if len(results) == 1 else 90)
    ax.set_yscale("log")
    ax.set_ylabel("model latency per call (ms, log)")
    threads = results[0].get("settings", {}).get("threads") if results else "?"
    ax.set_title(f"Latency distribution ({threads} thread(s); whiskers p1–p99)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scale(ax: Any, axis: str, values: list[float]) -> None:
    """Log scale only when the values span more than 20×; plain numbers on the ticks either way."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    values = [v for v in values if v and v > 0]
    if values and max(values) / min(values) > 20:
        getattr(ax, f"set_{axis}scale")("log")
    target = getattr(ax, f"{axis}axis")
    target.set_major_formatter(ScalarFormatter())
    target.set_minor_formatter(NullFormatter())


def plot_tradeoff(rows: list[dict[str, Any]], path: Path) -> Path:
    """Accuracy vs MACs vs latency across sizes: left MACs → latency, right latency → accuracy (when known),
    one colour per model in both panels. ``rows``: {name, macs, latency_ms, accuracy (or None)}."""
    plt = _pyplot()
    rows = [r for r in rows if r.get("latency_ms") is not None and r.get("macs")]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for k, r in enumerate(rows):
        c, macs_m = colours[k % len(colours)], r["macs"] / 1e6
        ax1.scatter(macs_m, r["latency_ms"], s=40, color=c)
        ax1.annotate(r["name"], (macs_m, r["latency_ms"]), fontsize=8, xytext=(4, 4), textcoords="offset points")
        if r.get("accuracy") is not None:
            ax2.scatter(r["latency_ms"], 100 * r["accuracy"], s=30 + 2 * macs_m, color=c)
            ax2.annotate(
                f"{r['name']} ({macs_m:.1f} M MACs)",
                (r["latency_ms"], 100 * r["accuracy"]),
                fontsize=8,
                xytext=(4, 4),
                textcoords="offset points",
            )
    _scale(ax1, "x", [r["macs"] / 1e6 for r in rows])
    _scale(ax1, "y", [r["latency_ms"] for r in rows])
    _scale(ax2, "x", [r["latency_ms"] for r in rows])
    ax1.set(
        xlabel="MACs per 1-s window (M, DCASE convention)",
        ylabel="LiteRT int8 latency p50 (ms)",
        title="Cost: MACs vs measured latency",
    )
    ax2.set(
        xlabel="LiteRT int8 latency p50 (ms)",
        ylabel="fold-5 accuracy, int8 (%)",
        title="Accuracy vs latency (marker size ~ MACs)",
    )
    if not any(r.get("accuracy") is not None for r in rows):
        ax2.text(
            0.5,
            0.5,
            "no accuracy recorded\n(export without evaluation data)",
            ha="center",
            va="center",
            transform=ax2.transAxes,
        )
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3, which="both")
        ax.margins(0.2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def console_table(result: dict[str, Any]) -> None:
    """A short rich table on stdout: what a person wants to see after the run."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 130)
    table = Table(title=f"{result.get('export', {}).get('name')} — {result.get('device', {}).get('name', '')}")
    for col in ("runtime", "artifact", "prec", "p50 ms", "p90 ms", "e2e p50 ms", "× real time", "act. mem"):
        table.add_column(col, justify="right" if "ms" in col or "×" in col else "left")
    for e in result.get("results", []):
        if e.get("error"):
            table.add_row(e["runtime"], e["artifact"], e.get("precision", ""), "error", e["error"][:60], "", "", "")
            continue
        table.add_row(
            e["runtime"],
            e["artifact"],
            e["precision"],
            f"{e['latency_ms']['p50']:.3f}",
            f"{e['latency_ms']['p90']:.3f}",
            f"{e['e2e_ms']['p50']:.3f}",
            f"{e['x_realtime']:.0f}",
            _mb(e.get("activation_memory", {}).get("bytes")),
        )
    if result.get("results"):
        console.print(table)
    fe = result.get("frontend", {}).get("ms_per_second")
    if fe:
        console.print(f"front end per 1 s of audio: p50 {fe['p50']:.3f} ms")
    for name, r in result.get("ratios", {}).items():
        console.print(f"ratio {name}: {r['ratio']:.2f}")
    for est in result.get("estimates", []):
        console.print(
            f"ESTIMATE {est['device']} {est['precision']}: {est['ms']:.2f} ms "
            f"({est['low_ms']:.2f}–{est['high_ms']:.2f}) — {est['source']}"
        )
    for f in result.get("mcu", {}).get("fits", []):
        flags = ", ".join(
            f"{k} {'ok' if f[key] else 'NO'}"
            for k, key in (("flash", "flash_ok"), ("RAM", "ram_ok"), ("arena block", "arena_block_ok"))
        )
        console.print(f"{f['board']}: {'fits' if f['fits'] else 'does NOT fit'} ({flags})")
    if result.get("interrupted"):
        console.print("[bold yellow]interrupted: partial results kept[/]")
