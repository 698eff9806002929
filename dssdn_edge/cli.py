"""The ``dssdn-edge`` command: a thin click layer over the library API.

Every command turns a ``DssdnError`` into one line on stderr and exit status 1, so scripts can rely on
the exit code and people see what file was wrong and why.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from .errors import DssdnError

SIZES = ["small", "middle", "large", "resnet"]


def friendly_errors(fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DssdnError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)

    return wrapper


@click.group()
@click.version_option(package_name="dssdn-edge")
def main() -> None:
    """DSSDN acoustic scene classifiers: train, evaluate, export to int8 and benchmark on edge devices."""


@main.command()
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--epochs", type=click.IntRange(1), default=25, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option("--lr", type=float, default=2e-3, show_default=True)
@click.option("--teacher", default=None, help="'resnet' (shipped, or trained first) or a checkpoint path.")
@click.option("--kd-lambda", type=click.FloatRange(0, 1), default=0.02, show_default=True)
@click.option("--kd-temperature", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@click.option("--mixup", "mixup_alpha", type=click.FloatRange(0), default=0.2, show_default=True)
@click.option("--freq-mixstyle", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of Freq-MixStyle per batch.")
@click.option("--windows-per-clip", type=click.IntRange(1), default=4, show_default=True)
@click.option("--limit-per-class", type=click.IntRange(1), default=None, help="Train on a small subset.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--data", type=click.Path(path_type=Path), default=None, help="ESC-50 folder (metadata.csv).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [runs/<model>].")
@friendly_errors
def train(size: str, data: Path | None, out: Path | None, **kwargs) -> None:
    """Train a DSSDN size (or the ResNet baseline) on ESC-50 folds 1-3, selecting on fold 4."""
    from .data import Dataset
    from .model import resolve_name
    from .train import TrainConfig
    from .train import train as run

    name = resolve_name(size)
    cfg = TrainConfig(model=name, **kwargs)
    run(cfg, out or Path("runs") / name, Dataset.load(data))


def _load(size: str | None, checkpoint: Path | None):
    from .checkpoint import load_checkpoint
    from .pretrained import load_pretrained

    return load_checkpoint(checkpoint) if checkpoint else load_pretrained(size or "small")


@main.command(name="eval")
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Instead of the shipped weights.")
@click.option("--data", type=click.Path(path_type=Path), default=None, help="ESC-50 folder (metadata.csv).")
@click.option("--split", type=click.Choice(["test", "calib", "train"]), default="test", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Write eval JSON + confusion PNG here.")
@friendly_errors
def eval_(size: str, checkpoint: Path | None, data: Path | None, split: str, out: Path | None) -> None:
    """Clip-level accuracy on fold 5 (mean of 1-s window logits), per class, confusion matrix."""
    import json

    from .data import Dataset, clip_features
    from .evaluate import clip_logits, plot_confusion, summarize
    from .frontend import Frontend

    ckpt = _load(size, checkpoint)
    fe = Frontend(ckpt.frontend_config)
    feats = clip_features(Dataset.load(data).split(split), fe, desc=f"features ({split})")
    logits = clip_logits(ckpt.model, feats, ckpt.normalization, fe.config.segment_frames, 25)
    ev = summarize(logits, feats.targets, ckpt.labels)
    click.echo(f"{ckpt.name}: {split} clip accuracy {ev.accuracy:.2%} on {len(feats.targets)} clips")
    worst = sorted(ev.per_class.items(), key=lambda kv: kv[1])[:5]
    click.echo("hardest classes: " + ", ".join(f"{k} {v:.0%}" for k, v in worst))
    if out:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{ckpt.name}-{split}.json").write_text(json.dumps(ev.to_dict(), indent=1) + "\n")
        plot_confusion(ev, out / f"{ckpt.name}-{split}-confusion.png", f"{ckpt.name} ({split})")
        click.echo(f"wrote {out / (ckpt.name + '-' + split + '.json')} and the confusion matrix PNG")


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

    name = resolve_name(size)
    meta = {}
    if checkpoint is not None or pretrained_path(name).is_file():
        ckpt = _load(size, checkpoint)
        model, fe_cfg, meta = ckpt.model, ckpt.frontend_config, ckpt.meta
    else:
        from .frontend import FrontendConfig

        model, fe_cfg = build_model(config_for(name)), FrontendConfig()
    c = measure(model, fe_cfg)
    budget = BUDGETS.get(name)
    if as_json:
        click.echo(json.dumps({"name": name, "complexity": c.to_dict(with_layers=layers),
                               "budget": budget, "metrics": meta.get("metrics")}, indent=1))
        return
    if layers:
        click.echo(format_table(c))
    click.echo(f"{name}: {c.params:,} params (BN folded), {c.macs / 1e6:.2f} M MACs per 1-s input")
    if budget:
        ok = c.params <= budget["params"] and c.macs <= budget["macs"]
        click.echo(f"budget: <= {budget['params']:,} params, <= {budget['macs'] / 1e6:.0f} M MACs -> "
                   f"{'within' if ok else 'OVER'}")
    if meta.get("metrics"):
        m = meta["metrics"]
        click.echo(f"shipped weights: fold-5 accuracy {m['test_accuracy']:.2%} (fold-4 {m['calib_accuracy']:.2%})")
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
    from .features import describe, features_for_file, plot_bands, save_npy
    from .frontend import Frontend, FrontendConfig

    fe = Frontend(FrontendConfig())
    if emit_c_dir is not None:
        from .frontend_c import emit_c

        for path in emit_c(fe.config, emit_c_dir, force=force):
            click.echo(f"wrote {path}")
        return
    if audio is None:
        raise click.UsageError("give an AUDIO file (or --emit-c DIR)")
    feats = features_for_file(audio, fe, normalize)
    click.echo(describe(audio, feats, fe))
    if npy:
        save_npy(npy, feats, force)
        click.echo(f"wrote {npy}")
    if png:
        plot_bands(png, feats, fe, str(audio), force)
        click.echo(f"wrote {png}")


@main.command()
@click.option("--size", type=click.Choice(SIZES), default=None, help="The shipped model (exported first).")
@click.option("--export", "export_dir", type=click.Path(path_type=Path), default=None, help="Export folder.")
@click.option("--device", default="cpu", show_default=True, help="cpu, rpi, cortex-m4 or cortex-m7.")
@click.option("--host", default=None, help="USER@HOST[:PORT] of the Pi (your ssh config and keys).")
@click.option("--runtimes", default=None, help="Comma list of torch,onnxruntime,litert,tflite-runtime,tflm.")
@click.option("--threads", type=int, default=1, show_default=True)
@click.option("--runs", type=int, default=200, show_default=True)
@click.option("--warmup", type=int, default=20, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="[runs/bench/<name>-<device>]")
@click.option("--estimate", is_flag=True, help="MAC-based latency ESTIMATE (rpi without --host, cortex-m).")
@click.option("--ssh-config", type=click.Path(path_type=Path), default=None, help="ssh -F FILE.")
@click.option("--identity", type=click.Path(path_type=Path), default=None, help="ssh -i FILE.")
@click.option("--remote-python", default="python3", show_default=True, help="Python on the device.")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None, help="Weights for torch eager.")
@friendly_errors
def bench(size: str | None, export_dir: Path | None, runtimes: str | None, **kwargs) -> None:
    """Benchmark an export: latency, front end, end-to-end real-time factor, memory; writes JSON/MD/PNG."""
    from .bench import BenchOptions, default_out, report, run_bench

    names = [r.strip() for r in runtimes.split(",") if r.strip()] if runtimes else None
    opts = BenchOptions(size=size, export_dir=export_dir, runtimes=names, **kwargs)
    result = run_bench(opts)
    report.console_table(result)
    for path in report.write_report(result, default_out(opts, result)):
        click.echo(f"wrote {path}")
    if result.get("interrupted"):
        sys.exit(130)


@main.command()
@click.option("--size", type=click.Choice(SIZES), default="small", show_default=True)
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="Instead of the shipped weights.")
@click.option("--int8/--no-int8", default=True, show_default=True,
              help="Also build full-integer int8 models.")
@click.option("--formats", default="onnx,tflite,c", show_default=True,
              help="Comma list of onnx, tflite, c.")
@click.option("--calib", "calib_dir", type=click.Path(path_type=Path), default=None,
              help="Calibrate int8 on your own audio (every readable file in DIR, recursively).")
@click.option("--eval", "eval_dir", type=click.Path(path_type=Path), default=None,
              help="ESC-50-style folder (metadata.csv) for fold-5 accuracy [../shared/data when present].")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [exports/<name>].")
@click.option("--force", is_flag=True, help="Replace an existing output folder.")
@click.option("--save-calibration", is_flag=True,
              help="Only measure the int8 ranges on fold 4 and store them beside the weights "
              "(<name>.calib.json).")
@friendly_errors
def export(size: str, checkpoint: Path | None, out: Path | None, save_calibration: bool, **kwargs) -> None:
    """Export to ONNX, TFLite fp32/int8 and a TFLite Micro C array, with manifest.json and report.md."""
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
        click.echo(f"wrote {save_stats(ckpt)}")
        return
    result = export_model(ckpt, out or Path("exports") / ckpt.name, **kwargs)
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
@click.option("--top-k", type=click.IntRange(1), default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@friendly_errors
def predict(audio: tuple[Path, ...], model_path: Path, top_k: int, as_json: bool) -> None:
    """Classify audio files: mean of 1-s window logits, top-k labels with softmax scores."""
    import json

    from .predict import Predictor

    predictions = Predictor.from_path(model_path).predict(list(audio), top_k)
    if as_json:
        click.echo(json.dumps([p.to_dict() for p in predictions], indent=1))
        return
    for p in predictions:
        top = ", ".join(f"{lab} {s:.1%}" for lab, s in zip(p.labels, p.scores, strict=True))
        click.echo(f"{p.path}: {top}")


if __name__ == "__main__":
    main()
