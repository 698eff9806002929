"""``dssdn-edge train``: ESC-50 or your own audio, one process or data-parallel (``--nproc``, ``torchrun``).

Why a module of its own: the command with its launcher of worker processes is a third of the CLI; ``cli``
registers it on the ``dssdn-edge`` group.
"""

from __future__ import annotations

import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import click

from .cli_common import SIZES, Finite, friendly_errors
from .errors import DssdnError


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


@click.command()
@click.option("--size", type=click.Choice(SIZES), default=None, help="Model size [small, or that of --init].")
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="ESC-50 folder, a folder of class folders, or a CSV (filename,label[,split|fold][,group]).")
@click.option("--init", default=None, help="Fine-tune from a shipped model (dssdn-small ...) or a checkpoint; "
              "'none' trains from scratch [scratch for ESC-50, the shipped size for your own data].")
@click.option("--epochs", type=click.IntRange(1), default=None, help="[400 from scratch, 60 fine-tuning]")
@click.option("--batch-size", type=click.IntRange(2), default=64, show_default=True)
@click.option("--lr", type=Finite(min=0, min_open=True), default=None,
              help="Peak learning rate [0.004 from scratch, 0.001 fine-tuning].")
@click.option("--weight-decay", type=Finite(0), default=1e-2, show_default=True)
@click.option("--warmup-epochs", type=click.IntRange(0), default=None, help="[10 from scratch, 2 fine-tuning]")
@click.option("--windows-per-clip", type=click.IntRange(1), default=1, show_default=True,
              help="Random 1-s crops of every clip per epoch.")
@click.option("--mixup", "mixup_alpha", type=Finite(0), default=0.3, show_default=True,
              help="Beta(a, a) mixing on every batch; 0 disables.")
@click.option("--gain-db", type=Finite(0), default=6.0, show_default=True)
@click.option("--shift-frames", type=click.IntRange(0), default=5, show_default=True)
@click.option("--freq-masks", type=click.IntRange(0), default=1, show_default=True)
@click.option("--freq-mask-max", type=click.IntRange(0), default=12, show_default=True)
@click.option("--time-masks", type=click.IntRange(0), default=1, show_default=True)
@click.option("--time-mask-max", type=click.IntRange(0), default=5, show_default=True)
@click.option("--freq-mixstyle", type=Finite(0, 1), default=0.0, show_default=True,
              help="Probability of Freq-MixStyle per batch.")
@click.option("--filter-aug-db", type=Finite(0), default=0.0, show_default=True,
              help="Random smooth equaliser along the mel axis, +- dB (FilterAugment); 0 disables.")
@click.option("--dropout", type=Finite(0, 1, max_open=True), default=None,
              help="Dropout before the classifier [the size's default, 0.3].")
@click.option("--ema-decay", type=Finite(0, 1, max_open=True), default=0.999, show_default=True)
@click.option("--teacher", default=None, help="'resnet' (shipped) or a checkpoint path to distil from.")
@click.option("--teacher-logits", type=click.Path(path_type=Path), default=None,
              help="A teacher-outputs .npz (per-window logits), e.g. ../shared/data/esc50_16k/teacher/*.npz.")
@click.option("--kd-lambda", type=Finite(0, 1), default=0.1, show_default=True,
              help="Weight of the label loss (1 - lambda goes to the teacher).")
@click.option("--kd-temperature", type=Finite(min=0.1), default=2.0, show_default=True)
@click.option("--teacher-embedding", type=click.Path(path_type=Path), default=None,
              help="A teacher .npz with an `embedding` array: also distil it (a projection of the pooled "
              "features, used in training only).")
@click.option("--embed-lambda", type=Finite(0), default=1.0, show_default=True,
              help="Weight of the embedding loss.")
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
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="Intra-op threads per worker.")
@click.option("--nproc", type=click.IntRange(1), default=1, show_default=True,
              help="Data-parallel worker processes on this machine (each takes batch-size/N windows of every "
              "batch); across machines start the same command under torchrun instead.")
@click.option("--batchnorm", type=click.Choice(["global", "local"]), default="global", show_default=True,
              help="With several workers: BatchNorm statistics over the global batch (the same training for any "
              "number of workers) or per worker (one synchronisation per step instead of two per BatchNorm).")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Run folder [runs/<model>-<time>].")
@click.option("--force", is_flag=True, help="Start over in a non-empty --out folder.")
@click.option("--resume", "resume_dir", type=click.Path(path_type=Path), default=None,
              help="Continue the run in this folder exactly where it stopped (all other options come from it).")
@click.option("--stop-after", type=click.IntRange(1), default=None,
              help="End this sitting after N epochs (resumable with --resume).")
@friendly_errors
def train(size: str | None, data: Path | None, init: str | None, out: Path | None, force: bool,
          resume_dir: Path | None, stop_after: int | None, train_folds: str | None, split_fractions: str,
          skip_bad: bool, teacher_logits: Path | None, teacher_embedding: Path | None, nproc: int,
          **kwargs) -> None:
    """Train a DSSDN size on ESC-50 or on your own labelled audio (fine-tuning the shipped weights)."""
    from .data import Dataset
    from .distributed import COMMAND_ENV, LAUNCHED_ENV
    from .runlock import exclusive
    from .train import train as run
    from .train_config import TrainConfig

    command = os.environ.get(COMMAND_ENV) or "dssdn-edge " + " ".join(sys.argv[1:])
    if nproc > 1:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        _launch_workers(nproc, resume_dir, out or Path("runs") / f"{_train_model(size, init, 'esc50')[0]}-{stamp}",
                        force, command)
    if int(os.environ.get("RANK", "0")) > 0:
        os.environ["DSSDN_PROGRESS"] = "0"  # one progress bar: rank 0's
    if resume_dir is not None:
        result = _as_worker(lambda: run(TrainConfig(), resume_dir, resume=True, stop_after=stop_after, log=click.echo,
                                        lock=not os.environ.get(LAUNCHED_ENV)))
        sys.exit(130 if result.interrupted else 0)
    if out is not None and out.exists() and not out.is_dir():
        raise DssdnError(f"{out}: exists and is a file, not a run folder")
    # one lock per run folder, taken before the data is read: by the --nproc launcher for all its workers,
    # under torchrun by rank 0 alone (it alone writes)
    lock_here = out is not None and not os.environ.get(LAUNCHED_ENV) and int(os.environ.get("RANK", "0")) == 0
    with exclusive(out, "training") if lock_here else nullcontext():
        dataset = Dataset.load(data, split=_fractions(split_fractions), seed=kwargs["seed"], skip_bad=skip_bad)
        name, init = _train_model(size, init, dataset.kind)
        for key, scratch, tune in (("epochs", 400, 60), ("lr", 4e-3, 1e-3), ("warmup_epochs", 10, 2)):
            if kwargs[key] is None:
                kwargs[key] = tune if init else scratch
        cfg = TrainConfig(model=name, init=init, train_folds=_csv_ints(train_folds),
                          teacher_logits=str(teacher_logits) if teacher_logits else None,
                          teacher_embedding=str(teacher_embedding) if teacher_embedding else None, **kwargs)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        click.echo(dataset.summary())
        result = _as_worker(lambda: run(cfg, out or Path("runs") / f"{name}-{stamp}", dataset, log=click.echo,
                                        force=force, stop_after=stop_after, command=command,
                                        lock=out is None and not os.environ.get(LAUNCHED_ENV)))
    sys.exit(130 if result.interrupted else 0)


def _as_worker(fn):
    """A worker started by ``--nproc`` that stopped because another one went away exits quietly with its own
    status: the launcher says which worker failed, in one line."""
    from .distributed import LAUNCHED_ENV, PEER_LOST_EXIT, PeerLost

    try:
        return fn()
    except PeerLost:
        if os.environ.get(LAUNCHED_ENV):
            sys.exit(PEER_LOST_EXIT)
        raise


def _launch_workers(nproc: int, resume_dir: Path | None, out: Path, force: bool, command: str) -> None:
    """``train --nproc N``: the same command as N workers of one process group on this machine; exits."""
    from .distributed import launch, state_note
    from .runlock import exclusive
    from .train import STATE_FILE, check_run_dir

    if "WORLD_SIZE" in os.environ:
        raise DssdnError("--nproc starts its own workers: leave it out under torchrun")
    run_dir = resume_dir or out
    check_run_dir(run_dir, resume_dir is not None, force)
    argv = _without_nproc(sys.argv[1:])
    if resume_dir is None and "--out" not in argv and not any(a.startswith("--out=") for a in argv):
        argv += ["--out", str(out)]  # every worker must name the same run folder
    with exclusive(run_dir, "training"):  # for all the workers: they run with the lock left to this process
        code, failure = launch(argv, nproc, command)
    if failure:
        click.echo(f"error: {run_dir}: {failure}; {state_note(run_dir, STATE_FILE)}", err=True)
    sys.exit(code)


def _without_nproc(argv: list[str]) -> list[str]:
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            out.append(a)
    return out


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
