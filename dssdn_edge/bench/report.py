"""Bench results as JSON, Markdown, PNG plots and a console table; ratios taken from one run.

Ratios (int8 vs fp32, ONNX Runtime vs LiteRT, torch eager vs LiteRT int8) are only meaningful between
numbers measured in the same run on the same machine state, so they are computed here from one result
and stored with it instead of being assembled later from different runs. Estimates are printed under
their own heading with the word ESTIMATE and their source, never mixed into the measured table.
"""

from __future__ import annotations

import re
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
    # the plain int8 file (what a Pi or a microcontroller runs); the CPU-packed twin is its own line
    t_fp32, t_int8 = find(result, tfl, "fp32", ".tflite"), find(result, tfl, "int8", ".int8.tflite")
    pairs = {
        f"{tfl} int8 / {tfl} fp32": (t_int8, t_fp32),
        f"{tfl} int8 packed / {tfl} fp32": (find(result, tfl, "int8", ".int8.packed.tflite"), t_fp32),
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
    if dev.get("mode") == "emulated":
        lines += ["**EMULATED: measured under qemu on the benchmarking host. These timings are not the "
                  "device's; only outputs, versions and memory carry over.**", ""]
    lines += [f"**Warning:** {w}" for w in result.get("warnings", [])]
    if result.get("warnings"):
        lines.append("")
    lines += [
        f"- created: {result.get('created', '')}",
        f"- export: `{exp.get('dir')}` (manifest sha256 {str(exp.get('manifest_sha256'))[:12]}…, verified)",
        f"- MACs per 1-s window: {_count(exp.get('complexity', {}).get('macs'))} "
        f"({exp.get('complexity', {}).get('convention', 'convention n/a')})",
        f"- threads {s.get('threads')}, runs {s.get('runs')} after {s.get('warmup')} warm-up; medians",
    ]
    where = " (read by sh on the ssh host)" if result.get("remote") else ""
    for when in ("before", "after"):
        info = result.get("sysinfo", {}).get(when)
        if info:
            lines.append(f"- system {when}{where}: {sys_line(info)}")
    env = result.get("environment", {})
    if env.get("device"):
        lines.append(f"- device, as its own python sees it: {device_line(env['device'])}")
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
            *_frontend_lines(result.get("frontend", {})),
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
    lines += _stage_lines(result.get("results", []))
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


def _frontend_lines(fe: dict[str, Any]) -> list[str]:
    """Which front ends ran: both implementations' times, the C library's status and its check against numpy."""
    impl = fe.get("implementations") or {}
    out = []
    if impl:
        times = ", ".join(f"{n} {_f((v.get('ms_per_second') or {}).get('p50'))} ms" for n, v in impl.items())
        out.append(f"Both front ends, interleaved (p50 per 1 s of audio, normalised floats out): {times}.")
    lib = fe.get("c_library") or {}
    if lib and lib.get("status") != "loaded":
        out.append(f"C front end not used: {lib.get('status')}.")
    check = fe.get("check")
    if check:
        int8 = (f"; int8 rows differing {check['int8_differing']} (max {check['int8_max_step']} step)"
                if "int8_differing" in check else "")
        out.append(f"C vs numpy here ({check.get('audio')}): max |diff| {check.get('max_abs', 0):.2e}, "
                   f"{check.get('max_abs_within_60db', 0):.2e} within 60 dB of each frame's peak{int8}: "
                   f"{'ok' if check.get('ok') else 'DIFFERS (C not used)'}.")
    return out


def _stage_lines(results: list[dict[str, Any]]) -> list[str]:
    """Audio -> label by stage for each front end measured (same run, interleaved), p50 ms per 1 s of audio."""
    rows = []
    for e in results:
        for fe, b in (e.get("by_frontend") or {}).items():
            st, stream = b.get("stages_ms") or {}, b.get("stream") or {}
            p = {k: (v or {}).get("p50") for k, v in st.items()}
            rows.append(
                f"| {e['runtime']} | {e['artifact']} | {fe} | {_f(p.get('frontend'))} | "
                f"{_f(p.get('normalise_quantise'))} | {_f(p.get('invoke'))} | "
                f"{_f(p.get('dequantise_softmax_average'))} | {_f(p.get('total'))} | "
                f"{_f(b.get('e2e_over_invoke'), 2)} | {_f(stream.get('ms_per_audio_second'))} | "
                f"{_f(stream.get('hop_over_invoke'), 2)} |"
            )
    if not rows:
        return []
    return [
        "",
        "## Audio → label by stage, per front end (p50 ms per 1 s of audio; streaming: 0.5-s hops)",
        "",
        "| runtime | artifact | front end | front end | normalise + quantise | invoke | dequantise + softmax + "
        "average | sum | sum / invoke | streaming ms per s | hop / invoke |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
        "",
        "The C front end makes an int8 NHWC model's input rows itself (normalised and quantised in C), so its "
        "normalise + quantise stage is only handing them over. The sum is the per-iteration total.",
    ]


def device_line(facts: dict[str, Any]) -> str:
    """One line from ``runner.device_facts``: architecture, CPU, int8 SIMD flags, OS, emulation."""
    parts = [
        str(facts.get("device_model") or facts.get("cpu_model") or "CPU n/a"),
        str(facts.get("machine")),
        f"SIMD {' '.join(facts.get('simd') or []) or 'n/a'}",
        str(facts.get("os") or "OS n/a"),
    ]
    if facts.get("emulated"):
        parts.append(str(facts["emulated"]))
    return "; ".join(parts)


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
    if fp.get("firmware"):
        from ..mcu.project import render_measured

        fw = fp["firmware"]
        return ["", "## Microcontroller fit (measured: the whole firmware, generated C)", "",
                f"- flash {_mb(fp['flash_bytes'])}, RAM {_mb(fp['ram_bytes'])} (linked firmware on "
                f"{fw['core']}; TFLM's arena for comparison: {_mb(fp['arena_bytes'])})", "",
                render_measured(fw), "", *_fit_table(mcu["fits"])]
    build = fp.get("frontend_build")
    how = "measured, cross-compiled" if build else "tables counted + code allowance"
    fe_flash = fp.get("frontend_flash_bytes", fp["frontend_tables_bytes"])
    lines = [
        "",
        "## Microcontroller fit: ESTIMATE (no generated model)",
        "",
        "This export's mcu/ has no generated model (made before `export --int8` wrote it): the TFLM code is an "
        "allowance, not measured. Export again for the measured firmware.",
        "",
        f"- flash {_mb(fp['flash_bytes'])} = model {_mb(fp['model_bytes'])} + front end {_mb(fe_flash)} ({how}) "
        f"+ TFLM code {_mb(fp['code_bytes'])} (allowance: the TFLM kernels are not built here)",
        f"- RAM {_mb(fp['ram_bytes'])} = TFLM arena {_mb(fp['arena_bytes'])} (measured) + front end "
        f"{_mb(fp['frontend_ram_bytes'])} ({'measured C twin + delta history' if build else 'computed'})",
        f"- ops: {', '.join(fp['ops'])}",
        "",
    ]
    if build:
        stack = build["stack"]
        lines += [
            f"Front end built for {build['core']} with `{' '.join(build['cflags'])}` ({build['compiler']}):",
            "",
            "| front end | bytes | how |",
            "|---|---:|---|",
            f"| flash | {build['flash_bytes']:,} | image with it − image without it (arm-none-eabi-size; code, "
            "tables, library code pulled in) |",
            f"| object file text / data / bss | {build['object_text']:,} / {build['object_data']:,} / "
            f"{build['object_bss']:,} | arm-none-eabi-size dssdn_frontend.o |",
            f"| static RAM | {build['static_ram_bytes']:,} | data + bss of the difference: state, one frame, "
            "one hop of input |",
            f"| stack, static worst case | {stack['bytes'] if stack['bytes'] is not None else 'unbounded'} | "
            f"-fstack-usage call graph {' → '.join(stack['path'])}; not counted: "
            f"{', '.join(stack['not_counted']) or 'none'} |",
        ]
        if build.get("stack_peak_bytes") is not None:
            q = build.get("qemu") or {}
            err = q.get("max_abs_error_within_60db")
            lines.append(
                f"| stack, peak on qemu | {build['stack_peak_bytes']:,} | painted stack on qemu -M {q.get('machine')} "
                f"(library calls included){'' if err is None else f'; features vs numpy max error {err:.1e}'} |"
            )
        lines.append("")
    lines += [
        f"  - {k}: {v}" for k, v in fp["sources"].items()
    ]
    return lines + ["", *_fit_table(mcu["fits"])]


def _fit_table(fits: list[dict[str, Any]]) -> list[str]:
    lines = ["| board | flash | RAM | arena in largest block | fits |", "|---|---|---|---|---|"]
    for f in fits:
        lines.append(
            f"| {f['board']} | {'ok' if f['flash_ok'] else 'NO'} ({_mb(f['flash_headroom'])} left) | "
            f"{'ok' if f['ram_ok'] else 'NO'} ({_mb(f['ram_headroom'])} left) | "
            f"{'ok' if f['arena_block_ok'] else 'NO'} | {'yes' if f['fits'] else 'no'} |"
        )
    return lines


def write_json(result: dict[str, Any], path: Path) -> Path:
    from ..fileio import write_json as write

    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, result)


def write_report(result: dict[str, Any], out_dir: Path, stem: str = "bench") -> list[Path]:
    """bench.json, bench.md and (with measured latencies) bench_latency.png in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [write_json(result, out_dir / f"{stem}.json")]
    from ..fileio import write_text

    paths.append(write_text(out_dir / f"{stem}.md", markdown(result)))
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
    dev = result.get("device", {})
    mode = " — EMULATED, not device timings" if dev.get("mode") == "emulated" else ""
    table = Table(title=f"{result.get('export', {}).get('name')} — {dev.get('name', '')}{mode}")
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
        impl = result.get("frontend", {}).get("implementations") or {}
        both = ", ".join(f"{n} {v['ms_per_second']['p50']:.3f} ms" for n, v in impl.items())
        console.print(f"front end per 1 s of audio ({result['frontend'].get('implementation', 'numpy')} ran): "
                      f"p50 {fe['p50']:.3f} ms" + (f" [{both}]" if len(impl) > 1 else ""))
    for name, r in result.get("ratios", {}).items():
        console.print(f"ratio {name}: {r['ratio']:.2f}")
    for est in result.get("estimates", []):
        console.print(
            f"ESTIMATE {est['device']} {est['precision']}: {est['ms']:.2f} ms "
            f"({est['low_ms']:.2f}–{est['high_ms']:.2f}) — {est['source']}"
        )
    fp = result.get("mcu", {}).get("footprint")
    if fp:
        line = f"{fp.get('basis', '')}: flash {_mb(fp['flash_bytes'])}, RAM {_mb(fp['ram_bytes'])}"
        ins = (fp.get("firmware") or {}).get("instructions")
        if ins:
            line += f", {ins['per_1s_window']:,} emulated instructions per 1-s window (not time)"
        console.print(line)
    for f in result.get("mcu", {}).get("fits", []):
        flags = ", ".join(
            f"{k} {'ok' if f[key] else 'NO'}"
            for k, key in (("flash", "flash_ok"), ("RAM", "ram_ok"), ("arena block", "arena_block_ok"))
        )
        console.print(f"{f['board']}: {'fits' if f['fits'] else 'does NOT fit'} ({flags})")
    for w in result.get("warnings", []):
        console.print(f"[bold yellow]warning:[/] {w}")
    if result.get("interrupted"):
        console.print("[bold yellow]interrupted: partial results kept[/]")


# ------------------------------------------------------------------------------------------- fleet
def fleet_rows(fleet: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per (device, runtime, artifact): the device's own facts and the medians measured there;
    a failed device gets one row with its error. The table and the plot are both drawn from these rows."""
    rows: list[dict[str, Any]] = []
    for d in fleet.get("devices", []):
        base = {"device": d["name"], "host": d["host"], "python_path": d["python"]}
        if not d.get("ok"):
            rows.append({**base, "mode": "failed", "error": d.get("error")})
            continue
        res = d["result"]
        env = res.get("environment", {})
        facts = env.get("device") or {}
        fe = (res.get("frontend") or {}).get("ms_per_second") or {}
        for e in res.get("results", []):
            lat = e.get("latency_ms") or {}
            rows.append({
                **base,
                "mode": res.get("device", {}).get("mode"),
                "machine": facts.get("machine") or env.get("machine"),
                "cpu": facts.get("device_model") or facts.get("cpu_model"),
                "simd": facts.get("simd") or [],
                "python": env.get("python"),
                "numpy": env.get("numpy"),
                "runtime": e["runtime"],
                "runtime_version": res.get("runtimes_available", {}).get(e["runtime"]),
                "artifact": e["artifact"],
                "precision": e.get("precision"),
                "p50_ms": lat.get("p50"),
                "p90_ms": lat.get("p90"),
                "e2e_p50_ms": (e.get("e2e_ms") or {}).get("p50"),
                "frontend_p50_ms": fe.get("p50"),
                "error": e.get("error"),
                "warnings": res.get("warnings", []),
            })
    return rows


def fleet_markdown(fleet: dict[str, Any]) -> str:
    """The combined fleet table; emulated rows say so in their mode column and in a banner."""
    s = fleet.get("settings", {})
    rows = fleet_rows(fleet)
    lines = [
        f"# Fleet benchmark: {fleet.get('export', {}).get('name')} on {len(fleet.get('devices', []))} devices",
        "",
        f"- created: {fleet.get('created')}; threads {s.get('threads')}, runs {s.get('runs')} after "
        f"{s.get('warmup')} warm-up; medians of model latency (set input, invoke, read output)",
        "- device facts (architecture, CPU, Python, numpy, runtime) come from each device's own python",
    ]
    if any(r["mode"] == "emulated" for r in rows):
        lines.append("- **emulated** rows ran under qemu on the benchmarking host: their timings are not the "
                     "device's (only relative order within one emulation means anything)")
    lines += [
        "",
        "| device | mode | arch | CPU | python | numpy | runtime | artifact | prec | p50 ms | p90 ms | "
        "audio → label p50 ms | front end ms / 1 s |",
        "|---|---|---|---|---|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["mode"] == "failed":
            lines.append(f"| {r['device']} | **failed** | | | | | | error: {r['error']} ||||||")
            continue
        rt = f"{r['runtime']} {r['runtime_version'] or ''}".strip()
        head = [r["device"], r["mode"], r["machine"], r["cpu"] or "n/a", r["python"], r["numpy"], rt, r["artifact"],
                r["precision"]]
        if r["error"]:
            cells = [*head, f"error: {r['error']}", "", "", ""]
        else:
            cells = [*head, _f(r["p50_ms"]), _f(r["p90_ms"]), _f(r["e2e_p50_ms"]), _f(r["frontend_p50_ms"])]
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    notes = list(dict.fromkeys(f"{r['device']}: {w}" for r in rows for w in r.get("warnings", [])))
    if notes:
        lines += ["", "Warnings:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def plot_fleet(fleet: dict[str, Any], path: Path) -> Path:
    """Median model latency (whisker to p90) per device, one bar per runtime and artifact; failed devices
    are listed under the axis, emulated ones labelled as such."""
    plt = _pyplot()
    all_rows = fleet_rows(fleet)
    rows = [r for r in all_rows if r["mode"] != "failed" and not r["error"] and r["p50_ms"] is not None]
    failed = [r["device"] for r in all_rows if r["mode"] == "failed"]
    groups = list(dict.fromkeys((r["device"], r["runtime"]) for r in rows))  # x: one device with one runtime
    series = list(dict.fromkeys(r["artifact"] for r in rows))  # bars: one colour per artifact
    modes = {r["device"]: r["mode"] for r in rows}
    fig, ax = plt.subplots(figsize=(max(6.5, 0.5 * len(groups) * max(1, len(series)) + 3), 5.0))
    width = 0.8 / max(1, len(series))
    for k, name in enumerate(series):
        xs, vals, err = [], [], []
        for i, (dev, rt) in enumerate(groups):
            r = next((r for r in rows if (r["device"], r["runtime"], r["artifact"]) == (dev, rt, name)), None)
            if r is None:
                continue
            xs.append(i + (k - (len(series) - 1) / 2) * width)
            vals.append(r["p50_ms"])
            err.append(max(0.0, (r["p90_ms"] or r["p50_ms"]) - r["p50_ms"]))
        ax.bar(xs, vals, width, yerr=[[0.0] * len(vals), err], capsize=2, label=name)
    ax.set_xticks(range(len(groups)),
                  [f"{d}\n{rt}" + ("\n(EMULATED)" if modes[d] == "emulated" else "") for d, rt in groups], fontsize=9)
    ax.set_ylabel("model latency p50 (ms), whisker p90")
    title = f"{fleet.get('export', {}).get('name')}: model latency per device"
    if "emulated" in modes.values():
        title += "\nEMULATED devices: qemu on the benchmarking host, not device timings"
    ax.set_title(title, fontsize=10)
    if failed:
        ax.set_xlabel("failed: " + ", ".join(failed), color="#b00")
    ax.legend(fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_fleet_report(fleet: dict[str, Any], out_dir: Path) -> list[Path]:
    """fleet.json, fleet.md, fleet_latency.png, and each measured device's own report in a subfolder."""
    from ..fileio import atomic_path, write_text
    from ..fileio import write_json as write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for d in fleet.get("devices", []):
        if d.get("ok"):
            slug = re.sub(r"[^A-Za-z0-9._-]+", "_", d["name"]).strip("_") or "device"
            paths += write_report(d["result"], out_dir / slug)
    paths.append(write_json_atomic(out_dir / "fleet.json", fleet))
    paths.append(write_text(out_dir / "fleet.md", fleet_markdown(fleet)))
    if any(r["mode"] != "failed" and r["p50_ms"] is not None for r in fleet_rows(fleet)):
        with atomic_path(out_dir / "fleet_latency.png") as tmp:
            plot_fleet(fleet, tmp)
        paths.append(out_dir / "fleet_latency.png")
    return paths
