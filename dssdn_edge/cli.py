"""The ``dssdn-edge`` command: a thin click layer over the library API.

Every command turns a ``DssdnError`` into one line on stderr and exit status 1, so scripts can rely on
the exit code and people see what file was wrong and why.
"""

from __future__ import annotations

import functools
import sys
import time
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


def _csv_ints(value: str | None) -> tuple[int, ...] | None:
    if value is None:
        return None
    try:
        return tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _fractions(value: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(v) for v in value.replace("/", ",").split(","))
    except ValueError:
        raise click.BadParameter(f"expected train,val,test fractions like 0.8,0.1,0.1, got {value!r}") from None
    if len(parts) != 3 or min(parts) < 0 or sum(parts) <= 0:
        raise click.BadParameter(f"expected three non-negative fractions, got {value!r}")
    total = sum(parts)
    return tuple(p / total for p in parts)  # type: ignore[return-value]


@main.command()
@click.option("--size", type=click.Choice(SIZES), default=None, help="Model size [small, or that of --init].")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="ESC-50 folder, a folder of class folders, or a CSV (filename,label[,split|fold][,group]).")
@click.option("--init", default=None, help="Fine-tune from a shipped model (dssdn-small ...) or a checkpoint; "
              "'none' trains from scratch [scratch for ESC-50, the shipped size for your own data].")
@click.option("--epochs", type=click.IntRange(1), default=400, show_default=True)
@click.option("--batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=4e-3, show_default=True)
@click.option("--weight-decay", type=click.FloatRange(0), default=1e-2, show_default=True)
@click.option("--warmup-epochs", type=click.IntRange(0), default=10, show_default=True)
@click.option("--windows-per-clip", type=click.IntRange(1), default=1, show_default=True,
              help="Random 1-s crops of every clip per epoch.")
@click.option("--mixup", "mixup_alpha", type=click.FloatRange(0), default=0.3, show_default=True,
              help="Beta(a, a) mixing on every batch; 0 disables.")
@click.option("--gain-db", type=click.FloatRange(0), default=6.0, show_default=True)
@click.option("--shift-frames", type=click.IntRange(0), default=5, show_default=True)
@click.option("--freq-masks", type=click.IntRange(0), default=1, show_default=True)
@click.option("--freq-mask-max", type=click.IntRange(0), default=12, show_default=True)
@click.option("--time-masks", type=click.IntRange(0), default=1, show_default=True)
@click.option("--time-mask-max", type=click.IntRange(0), default=5, show_default=True)
@click.option("--freq-mixstyle", type=click.FloatRange(0, 1), default=0.0, show_default=True,
              help="Probability of Freq-MixStyle per batch.")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True), default=0.999, show_default=True)
@click.option("--teacher", default=None, help="'resnet' (shipped) or a checkpoint path to distil from.")
@click.option("--teacher-logits", type=click.Path(path_type=Path), default=None,
              help="A teacher-outputs .npz (per-window logits), e.g. ../shared/data/esc50_16k/teacher/*.npz.")
@click.option("--kd-lambda", type=click.FloatRange(0, 1), default=0.1, show_default=True,
              help="Weight of the label loss (1 - lambda goes to the teacher).")
@click.option("--kd-temperature", type=click.FloatRange(min=0.1), default=2.0, show_default=True)
@click.option("--train-folds", default=None, help="ESC-50: folds to train on [1,2,3]; 1,2,3,4 for the shipped weights.")
@click.option("--val-fold", type=int, default=4, show_default=True, help="ESC-50: fold scored during training.")
@click.option("--split", "split_fractions", default="0.8,0.1,0.1", show_default=True,
              help="Your data without a split/fold column: train,val,test fractions (stratified, seeded).")
@click.option("--skip-bad", is_flag=True, help="Skip (and count) unreadable audio files instead of stopping.")
@click.option("--freeze-epochs", type=click.IntRange(0), default=0, show_default=True,
              help="Fine-tuning: train only the head for the first epochs.")
@click.option("--renormalize", is_flag=True, help="Fine-tuning: refit the normalisation on your data.")
@click.option("--eval-every", type=click.IntRange(1), default=5, show_default=True)
@click.option("--limit-per-class", type=click.IntRange(1), default=None, help="Train on a small subset.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [runs/<model>-<time>].")
@click.option("--force", is_flag=True, help="Start over in a non-empty --out folder.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder exactly where it stopped (all other options come from it).")
@click.option("--stop-after", type=click.IntRange(1), default=None,
              help="End this sitting after N epochs (resumable with --resume).")
@friendly_errors
def train(size: str | None, data: Path | None, init: str | None, out: Path | None, force: bool,
          resume_dir: Path | None, stop_after: int | None, train_folds: str | None, split_fractions: str,
          skip_bad: bool, teacher_logits: Path | None, **kwargs) -> None:
    """Train a DSSDN size on ESC-50 or on your own labelled audio (fine-tuning the shipped weights)."""
    from .data import Dataset
    from .train import TrainConfig
    from .train import train as run

    command = "dssdn-edge " + " ".join(sys.argv[1:])
    if resume_dir is not None:
        result = run(TrainConfig(), resume_dir, resume=True, stop_after=stop_after, log=click.echo)
        sys.exit(130 if result.interrupted else 0)
    dataset = Dataset.load(data, split=_fractions(split_fractions), seed=kwargs["seed"], skip_bad=skip_bad)
    name, init = _train_model(size, init, dataset.kind)
    cfg = TrainConfig(model=name, init=init, train_folds=_csv_ints(train_folds),
                      teacher_logits=str(teacher_logits) if teacher_logits else None, **kwargs)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    click.echo(dataset.summary())
    result = run(cfg, out or Path("runs") / f"{name}-{stamp}", dataset, log=click.echo, force=force,
                 stop_after=stop_after, command=command)
    sys.exit(130 if result.interrupted else 0)


def _train_model(size: str | None, init: str | None, kind: str) -> tuple[str, str | None]:
    """The model name and the initialisation: ``--init`` decides the size when ``--size`` is not given;
    your own data starts from the shipped weights of the size unless ``--init none``."""
    from .checkpoint import read_sidecar
    from .model import resolve_name

    if init is not None and init.lower() == "none":
        return resolve_name(size or "small"), None
    if init is None:
        name = resolve_name(size or "small")
        return name, (None if kind == "esc50" else name)
    try:
        init_name = resolve_name(init)
    except ValueError:
        side = read_sidecar(Path(init).with_suffix(".safetensors")) if Path(init).exists() else None
        if side is None:
            from .errors import CheckpointError

            raise CheckpointError(f"{init}: --init is neither a shipped model nor a checkpoint file") from None
        init_name = side.get("name", "")
    if size is not None and resolve_name(size) != init_name:
        from .errors import CheckpointError

        raise CheckpointError(f"{init}: --init is a {init_name}, not a {resolve_name(size)}")
    return init_name, init


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
