"""The ``dssdn-edge`` command: a thin click layer over the library API.

Every command turns a ``DssdnError`` into one line on stderr and exit status 1, so scripts can rely on
the exit code and people see what file was wrong and why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_common import SIZES, Finite, friendly_errors
from .cli_train import train
from .errors import DssdnError


class OneLineErrors(click.Group):
    """Usage errors (a bad option value, a missing argument) as one ``error:`` line, like every other error,
    with the command's --help named; exit status 2 as click's own."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx is not None else "dssdn-edge"
            click.echo(f"error: {exc.format_message()} (see {cmd} --help)", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


@click.group(cls=OneLineErrors)
@click.version_option(package_name="dssdn-edge")
def main() -> None:
    """DSSDN acoustic scene classifiers: train, evaluate, export to int8 and benchmark on edge devices."""


main.add_command(train)


def _load(size: str | None, checkpoint: Path | None):
    from .checkpoint import load_checkpoint
    from .pretrained import load_pretrained

    return load_checkpoint(checkpoint) if checkpoint else load_pretrained(size or "small")


@main.command(name="eval")
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Instead of the shipped weights.")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="ESC-50 folder, class folders or a CSV [ESC-50 in ../shared].")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write eval JSON + confusion PNG here.")
@click.option("--force", is_flag=True, help="Overwrite existing result files in --out.")
@friendly_errors
def eval_(size: str, checkpoint: Path | None, data: Path | None, split: str, out: Path | None, force: bool) -> None:
    """Clip-level accuracy (mean of 1-s window logits), per class, confusion matrix."""
    from .data import Dataset
    from .evaluate import evaluate_dataset, plot_confusion
    from .fileio import refuse_overwrite, write_json

    ckpt = _load(size, checkpoint)
    if out is not None:
        if out.exists() and not out.is_dir():
            raise DssdnError(f"{out}: exists and is not a folder")
        files = [out / f"{ckpt.name}-{split}.json", out / f"{ckpt.name}-{split}-confusion.png"]
        for f in files:
            refuse_overwrite(f, force)
    ev = evaluate_dataset(ckpt, Dataset.load(data), split)
    click.echo(f"{ckpt.name}: {split} clip accuracy {ev.accuracy:.2%} on {ev.clips} clips")
    worst = sorted(ev.per_class.items(), key=lambda kv: kv[1])[:5]
    click.echo("hardest classes: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(files[0], ev.to_dict())
        plot_confusion(ev, files[1], f"{ckpt.name} ({split})")
        click.echo(f"wrote {files[0]} and {files[1].name}")


@main.command()
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None)
@click.option("--layers/--no-layers", default=False, help="Print the per-layer table.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def info(size: str, checkpoint: Path | None, layers: bool, as_json: bool) -> None:
    """Params and MACs per 1-s input (DCASE/NeSsi convention), budget, and the shipped metrics."""
    import json

    from .complexity import format_table, measure
    from .model import BUDGETS, build_model, config_for, resolve_name
    from .pretrained import pretrained_path

    if checkpoint is not None:  # the checkpoint names and sizes itself; its metrics are its own
        ckpt = _load(size, checkpoint)
        source = click.get_current_context().get_parameter_source("size")
        if source != click.core.ParameterSource.DEFAULT and ckpt.name != resolve_name(size):
            from .errors import CheckpointError

            raise CheckpointError(f"{checkpoint}: checkpoint is a {ckpt.name}, not a {resolve_name(size)} "
                                  "(--size describes shipped weights; leave it out with --checkpoint)")
        name, model, fe_cfg, meta = ckpt.name, ckpt.model, ckpt.frontend_config, ckpt.meta
        whose = f"checkpoint {checkpoint}"
    else:
        name = resolve_name(size)
        meta, whose = {}, "shipped weights"
        if pretrained_path(name).is_file():
            ckpt = _load(size, None)
            model, fe_cfg, meta = ckpt.model, ckpt.frontend_config, ckpt.meta
        else:
            from .frontend import FrontendConfig

            model, fe_cfg = build_model(config_for(name)), FrontendConfig()
    c = measure(model, fe_cfg)
    budget = BUDGETS.get(name)
    if as_json:
        click.echo(json.dumps({"name": name, "source": whose, "complexity": c.to_dict(with_layers=layers),
                               "budget": budget, "metrics": meta.get("metrics")}, indent=1))
        return
    if layers:
        click.echo(format_table(c))
    click.echo(f"{name}: {c.params:,} params (BN folded), {c.macs / 1e6:.2f} M MACs per 1-s input")
    if budget:
        ok = c.params <= budget["params"] and c.macs <= budget["macs"]
        click.echo(f"budget: <= {budget['params']:,} params, <= {budget['macs'] / 1e6:.0f} M MACs -> "
                   f"{'within' if ok else 'OVER'}")
    m = meta.get("metrics") or {}
    accs = ", ".join(f"{k.removesuffix('_accuracy')} {v:.2%}" for k, v in m.items()
                     if k.endswith("_accuracy") and isinstance(v, float))
    if accs:
        click.echo(f"{whose}: clip accuracy {accs} ({m.get('eval', '')})")
    click.echo(f"convention: {c.convention}")


@main.command()
@click.argument("audio", type=click.Path(path_type=Path), required=False)
@click.option("--npy", type=click.Path(path_type=Path), default=None, help="Save features (channels, frames, bands).")
@click.option("--png", type=click.Path(path_type=Path), default=None, help="Plot the low and high bands.")
@click.option("--normalize/--raw", default=False, help="Apply the shipped small model's normalisation.")
@click.option("--emit-c", "emit_c_dir", type=click.Path(path_type=Path), default=None,
              help="Write the C twin (tables header + sources) for this front end into DIR and exit.")
@click.option("--force", is_flag=True, help="Overwrite existing output files.")
@friendly_errors
def features(audio: Path | None, npy: Path | None, png: Path | None, normalize: bool, emit_c_dir: Path | None,
             force: bool) -> None:
    """Compute the split log-mel features of AUDIO; print shape and stats, optionally save/plot them."""
    from .audio_stream import audio_seconds
    from .features import PLOT_FRAMES, describe_stats, plot_bands, stream_features
    from .fileio import refuse_overwrite
    from .frontend import Frontend, FrontendConfig

    fe = Frontend(FrontendConfig())
    if emit_c_dir is not None:
        from .frontend_c import emit_c

        for path in emit_c(fe.config, emit_c_dir, force=force):
            click.echo(f"wrote {path}")
        return
    if audio is None:
        raise click.UsageError("give an AUDIO file (or --emit-c DIR)")
    every = None
    if png:
        refuse_overwrite(png, force)
        every = max(1, round(audio_seconds(audio) * fe.config.sample_rate / fe.config.hop_length / PLOT_FRAMES))
    stats, thumb = stream_features(audio, fe, normalize, npy, force, keep_every=every)
    click.echo(describe_stats(audio, stats, fe))
    if npy:
        click.echo(f"wrote {npy}")
    if png:
        plot_bands(png, thumb, fe, str(audio), force, every=every or 1)
        click.echo(f"wrote {png}")


@main.command()
@click.option("--size", type=click.Choice(SIZES), default=None, help="The shipped model (exported first).")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None, help="Export folder.")
@click.option("--device", default="cpu", show_default=True, help="cpu, rpi, cortex-m4 or cortex-m7.")
@click.option("--host", "hosts", multiple=True, help="USER@HOST[:PORT] of the Pi (your ssh config and keys); "
              "repeat it to bench a fleet in parallel.")
@click.option("--hosts", "hosts_file", type=click.Path(path_type=Path), default=None,
              help="Fleet file: NAME USER@HOST[:PORT] [REMOTE_PYTHON] per line.")
@click.option("--runtimes", default=None, help="Comma list of torch,onnxruntime,litert,tflite-runtime,tflm.")
@click.option("--threads", type=click.IntRange(1, 256), default=1, show_default=True)
@click.option("--runs", type=click.IntRange(1, 1_000_000), default=200, show_default=True)
@click.option("--warmup", type=click.IntRange(0, 1_000_000), default=20, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="[runs/bench/<name>-<device>]")
@click.option("--estimate", is_flag=True, help="MAC-based latency ESTIMATE (rpi without --host, cortex-m).")
@click.option("--ssh-config", type=click.Path(path_type=Path), default=None, help="ssh -F FILE.")
@click.option("--identity", type=click.Path(path_type=Path), default=None, help="ssh -i FILE.")
@click.option("--remote-python", default="python3", show_default=True, help="Python on the device.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights for torch eager.")
@click.option("--force", is_flag=True, help="Overwrite the report files in an existing --out folder.")
@friendly_errors
def bench(size: str | None, export_dir: Path | None, runtimes: str | None, force: bool, hosts: tuple[str, ...],
          hosts_file: Path | None, **kwargs) -> None:
    """Benchmark an export: latency, front end, end-to-end real-time factor, memory; writes JSON/MD/PNG."""
    from .bench import REPORT_FILES, BenchOptions, default_out, report, run_bench
    from .fileio import refuse_overwrite

    names = [r.strip() for r in runtimes.split(",") if r.strip()] if runtimes else None
    if len(hosts) > 1 or hosts_file is not None:
        _bench_fleet(BenchOptions(size=size, export_dir=export_dir, runtimes=names, **kwargs), hosts, hosts_file,
                     force)
        return
    opts = BenchOptions(size=size, export_dir=export_dir, runtimes=names, host=hosts[0] if hosts else None, **kwargs)
    if opts.out is not None:
        if opts.out.exists() and not opts.out.is_dir():
            raise DssdnError(f"{opts.out}: exists and is not a folder")
        for name in REPORT_FILES:
            refuse_overwrite(opts.out / name, force)
    result = run_bench(opts)
    report.console_table(result)
    for path in report.write_report(result, default_out(opts, result)):
        click.echo(f"wrote {path}")
    if result.get("interrupted"):
        sys.exit(130)


def _bench_fleet(opts, hosts: tuple[str, ...], hosts_file: Path | None, force: bool) -> None:
    """Several devices in parallel: one combined report; each failed device is one error line, exit 1."""
    from .bench import report
    from .bench.fleet import default_fleet_out, fleet_devices, run_fleet
    from .fileio import refuse_overwrite

    devices = fleet_devices(hosts, hosts_file, opts.remote_python)
    if opts.out is not None:
        if opts.out.exists() and not opts.out.is_dir():
            raise DssdnError(f"{opts.out}: exists and is not a folder")
        for name in ("fleet.json", "fleet.md", "fleet_latency.png"):
            refuse_overwrite(opts.out / name, force)
    fleet = run_fleet(opts, devices)
    for d in fleet["devices"]:
        if d["ok"]:
            report.console_table(d["result"])
    for path in report.write_fleet_report(fleet, default_fleet_out(opts, fleet)):
        click.echo(f"wrote {path}")
    for d in fleet["devices"]:
        if not d["ok"]:
            click.echo(f"error: {d['name']} ({d['host']}): {d['error']}", err=True)
    if fleet["failed"]:
        sys.exit(1)


@main.command()
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Instead of the shipped weights.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also build full-integer int8 models.")
@click.option("--formats", default="onnx,tflite,c,phone", show_default=True,
              help="Comma list of onnx, tflite, c, phone (<name>.audio.tflite: a 1-s window of audio + its "
                   "context in, scores out).")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Calibrate int8 on this audio (every audio file in DIR, recursively) "
              "[the checkpoint's training audio, or ESC-50 fold 4].")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path), default=None,
              help="Data to measure accuracy on (its test split): ESC-50, class folders or a CSV "
              "[the checkpoint's own data, or ESC-50 fold 5 in ../shared].")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [exports/<name>].")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--save-calibration", is_flag=True,
              help="Only measure the int8 ranges on fold 4 and store them beside the weights "
              "(<name>.calib.json).")
@friendly_errors
def export(size: str, checkpoint: Path | None, out: Path | None, save_calibration: bool, **kwargs) -> None:
    """Export to ONNX, TFLite fp32/int8, a phone file and mcu/ (generated C + TFLM array); manifest + report."""
    from .export import export_model, resolve_checkpoint
    from .export import save_calibration as save_stats
    from .model import resolve_name

    if checkpoint is not None:
        ckpt = resolve_checkpoint(checkpoint)
        source = click.get_current_context().get_parameter_source("size")
        explicit = source != click.core.ParameterSource.DEFAULT
        if explicit and ckpt.model_config.arch + ckpt.model_config.operator != _arch_of(resolve_name(size)):
            from .errors import CheckpointError

            raise CheckpointError(f"{checkpoint}: checkpoint is a {ckpt.name}, not a {resolve_name(size)}")
    else:
        ckpt = resolve_checkpoint(resolve_name(size))
    if save_calibration:
        click.echo(f"wrote {save_stats(ckpt, force=kwargs['force'])}")
        return
    spec = ckpt.meta.get("data") or {}
    if (spec.get("kind") in ("folder", "csv") and spec.get("root") and not Path(spec["root"]).exists()
            and (kwargs["eval_dir"] is None or kwargs["calib_dir"] is None)):
        click.echo(f"warning: {spec['root']}: the data this checkpoint was trained on is not there (seen from "
                   f"{Path.cwd()}); without --eval its accuracy is not measured and without --calib int8 "
                   "calibration uses other audio", err=True)
    from .device.firmware import measure_project

    result = export_model(ckpt, out or Path("exports") / ckpt.name, measure_firmware=measure_project, **kwargs)
    _print_export(result)


def _arch_of(name: str) -> str:
    from .model import SIZES as CONFIGS

    return CONFIGS[name].arch + CONFIGS[name].operator


def _print_export(result) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.manifest['name']} export")
    for col in ("file", "bytes", "runtime", "quality vs fp32 torch"):
        table.add_column(col, justify="right" if col == "bytes" else "left")
    for row in result.rows():
        table.add_row(*row)
    console = Console()
    console.print(table)
    console.print(f"calibration: {result.manifest['calibration']['source']}")
    console.print(f"wrote {result.out_dir} (manifest.json, report.md)")


@main.command()
@click.argument("audio", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", "model_path", type=click.Path(path_type=Path), required=True,
              help=".onnx or .tflite inside an export folder, or a .safetensors checkpoint.")
@click.option("--top-k", type=click.IntRange(1, 1000), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--stream", "stream", is_flag=True, help="A label per hop while the audio plays, as a device would.")
@click.option("--hop", type=Finite(min=0.02, max=60), default=0.5, show_default=True,
              help="With --stream: seconds between classified 1-s windows.")
@click.option("--frontend", "frontend", type=click.Choice(["auto", "c", "numpy"]), default=None,
              help="Front end: the C one (auto: if a C compiler exists, else numpy), or numpy, the reference. "
                   "Default: $DSSDN_FRONTEND, else auto.")
@friendly_errors
def predict(audio: tuple[Path, ...], model_path: Path, top_k: int, as_json: bool, stream: bool, hop: float,
            frontend: str | None) -> None:
    """Classify audio files: mean of 1-s window logits, top-k labels with softmax scores.

    A file that cannot be classified gets an error line (an "error" field with --json) and the others go
    on; the exit status is 1 if any file failed."""
    import json

    from .labels import safe_label
    from .predict import Predictor

    predictor = Predictor.from_path(model_path, frontend)
    if stream:
        failed = _predict_stream(predictor, audio, hop, as_json)
    else:
        predictions = []
        for path in audio:
            p = predictor.predict([path], top_k)[0]
            predictions.append(p)
            if p.error is not None:
                click.echo(f"error: {p.error}", err=True)
            elif not as_json:
                top = ", ".join(f"{safe_label(lab)} {s:.1%}" for lab, s in zip(p.labels, p.scores, strict=True))
                click.echo(f"{p.path}: {top}")
        if as_json:
            click.echo(json.dumps([p.to_dict() for p in predictions], indent=1, ensure_ascii=False))
        failed = sum(p.error is not None for p in predictions)
    if failed:
        sys.exit(1)


def _predict_stream(predictor, audio: tuple[Path, ...], hop: float, as_json: bool) -> int:
    import json

    from .labels import safe_label

    failed = 0
    for path in audio:
        try:
            frame = predictor.frontend.config.hop_length / predictor.frontend.config.sample_rate
            seg = predictor.frontend.config.segment_seconds
            for h in predictor.stream(path, hop):
                start = h.first_frame * frame
                if as_json:
                    click.echo(json.dumps({"path": str(path), "start_s": round(start, 3),
                                           "end_s": round(start + seg, 3), "label": h.label,
                                           "score": round(h.score, 5)}, ensure_ascii=False))
                else:
                    click.echo(f"{path} {start:7.2f}-{start + seg:.2f} s: {safe_label(h.label)} {h.score:.1%}")
        except DssdnError as exc:
            failed += 1
            click.echo(f"error: {exc}", err=True)
            if as_json:
                click.echo(json.dumps({"path": str(path), "error": str(exc)}, ensure_ascii=False))
    return failed


@main.group()
def device() -> None:
    """Device software in the loop on this host: an emulated Raspberry Pi, the Cortex-M front-end build."""


@device.command()
@click.argument("board", type=click.Choice(["rpi4", "rpi5"]))
@click.argument("out_dir", type=click.Path(path_type=Path))
@click.option("--runtime", type=click.Choice(["tflite-runtime", "litert"]), default="tflite-runtime",
              show_default=True, help="What OUT_DIR/python3 imports (python3-<runtime> exist for both).")
@click.option("--cache", type=click.Path(path_type=Path), default=None,
              help="Where the shared userland is built [$DSSDN_CACHE or ~/.cache/dssdn-edge].")
@click.option("--force", is_flag=True, help="Replace a non-empty OUT_DIR that is not an emulated device.")
@friendly_errors
def emulate(board: str, out_dir: Path, runtime: str, cache: Path | None, force: bool) -> None:
    """An EMULATED Raspberry Pi userland (Debian bookworm arm64 under qemu-aarch64, the board's core):
    OUT_DIR/python3 is an interpreter for `bench --device rpi --remote-python`. Timings through it are
    emulated, not a Pi's; reports say so."""
    from .device import emulate as make

    pi = make(board, out_dir, runtime, cache, force=force, log=click.echo)  # progress on stdout, errors on stderr
    versions = pi.userland.stamp.get("versions", {})
    click.echo(f"{pi.label}")
    click.echo(f"python {versions.get('python')}, numpy {versions.get('numpy')}, "
               + ", ".join(f"{k} {v}" for k, v in versions.get("runtimes", {}).items()))
    click.echo(f"userland {pi.userland.path} (tree sha256 {pi.userland.tree_sha256[:12]}…, verified)")
    for name in ("python3", *(f"python3-{r}" for r in versions.get("runtimes", {}))):
        click.echo(f"wrote {pi.path / name}")


@device.command(name="cortex-m")
@click.argument("core", type=click.Choice(["cortex-m4", "cortex-m7"]))
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Build folder [runs/<core>-frontend].")
@click.option("--audio", "audio_files", multiple=True, type=click.Path(path_type=Path),
              help="Clips to run on qemu (first second of each) [a deterministic chirp].")
@click.option("--src", "src_dir", type=click.Path(path_type=Path), default=None,
              help="C sources to build (an export's mcu/ folder) [emitted for the default front end].")
@click.option("--run/--no-run", default=True, show_default=True, help="Run the firmware on qemu-system-arm.")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None,
              help="An export folder (made with --int8): run its whole mcu/ project, model included.")
@click.option("--clips", "n_clips", type=click.IntRange(1, 400), default=8, show_default=True,
              help="With --export and no --audio: how many real fold-5 clips of the dataset to run.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def cortex_m(core: str, out: Path | None, audio_files: tuple[Path, ...], src_dir: Path | None, run: bool,
             export_dir: Path | None, n_clips: int, as_json: bool) -> None:
    """With --export (or --src an export's mcu/ holding the generated model): link the whole classifier
    (front end + generated model + glue) for CORE, stream whole clips through it on qemu, report measured
    flash, RAM and emulated instructions, and check labels against predict and logits against TFLite Micro.
    Without: the front end's C twin alone, its features checked against numpy."""
    import json

    from .device.build_report import build_and_check
    from .device.firmware import MODEL_HEADER

    if export_dir is None and src_dir is not None and (Path(src_dir) / MODEL_HEADER).is_file() \
            and (Path(src_dir).parent / "manifest.json").is_file():
        export_dir = Path(src_dir).parent
    if export_dir is not None and run:
        from .device.firmware_check import run_and_check

        report = run_and_check(core, export_dir, out or Path("runs") / f"{core}-firmware", list(audio_files),
                               n_clips)
        if as_json:
            click.echo(json.dumps({k: v for k, v in report.items() if k != "lines"}, indent=1, default=str))
        else:
            for line in report["lines"]:
                click.echo(line)
        if not report["ok"]:
            bad = [c for c in report["check"]["clips"] if not (c["logits_equal_tflm"] and c["same_windows"]
                                                              and (c["agree"] or c["near_tie"]))]
            click.echo(f"error: {bad[0]['path']}: the emulated {core} disagrees with the host (label "
                       f"{bad[0]['device_label']} vs predict {bad[0]['predict_label']}, logits equal TFLM: "
                       f"{bad[0]['logits_equal_tflm']})", err=True)
            sys.exit(1)
        return
    report = build_and_check(core, out, list(audio_files), run, src_dir)
    if as_json:
        click.echo(json.dumps(report, indent=1))
    else:
        for line in report["lines"]:
            click.echo(line)
        click.echo("front end only: pass --export <folder made with export --int8> to run the whole model")
    if not report["ok"]:
        worst = max(report["errors"], key=lambda e: e["within_60db"])
        click.echo(f"error: {worst['clip']}: features on the emulated {core} differ from numpy by "
                   f"{worst['within_60db']:.2e} (> {report['tolerance']:g})", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
