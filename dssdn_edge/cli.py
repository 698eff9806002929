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
    from .train import TrainConfig, train as run

    name = resolve_name(size)
    cfg = TrainConfig(model=name, **kwargs)
    run(cfg, out or Path("runs") / name, Dataset.load(data))


if __name__ == "__main__":
    main()
