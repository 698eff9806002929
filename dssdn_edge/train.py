"""Training: long schedules of 1-s crops with mixing, gain, shifts, mild masks, EMA and distillation.

The recipe follows what makes small audio models train well on few clips and two CPU cores
(../shared/design/training.md): many epochs of one random non-silent 1-s crop per clip, mixup on every
batch, ±gain and time shifts, mild masks, an exponential moving average of the weights, and a teacher's
per-window outputs as soft targets (the target of a mixed input is the same mix of the two teacher
distributions). One thread, ``channels_last``, features precomputed in memory.

A run lives in one folder. Every few minutes (and on Ctrl-C) the whole training state is written
atomically to ``state.pt`` — model, optimiser, schedule position, EMA, history and every RNG state — so
``train(..., resume=True)`` continues exactly where it stopped, step for step.

Under ``torchrun`` (or ``dssdn-edge train --nproc N``) the same loop runs data-parallel: each rank takes its
slice of every global batch and ``dssdn_edge.distributed`` averages the gradients; rank 0 alone writes.
"""

from __future__ import annotations

import copy
import json
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .data import ClipFeatures, Dataset, clip_features, silent_classes
from .distributed import GradientSync, PeerLost, World, close, seed_step, sync_batchnorm, world_from_env
from .embedding_kd import EmbeddingDistiller, load_teacher_embeddings
from .errors import DssdnError
from .fileio import write_json
from .frontend import Frontend, FrontendConfig, Normalization
from .model import build_model, config_for, resolve_name
from .progress import progress_bar
from .runlock import exclusive
from .teacher import TeacherTable, load_teacher_file, teacher_from_checkpoint
from .train_config import TrainConfig
from .train_state import first_line, load_state, plot_history, save_state  # noqa: F401 - first_line re-exported
from .train_steps import EMA, Batcher, accuracy, lr_lambda, set_trainable, train_step

STATE_FILE = "state.pt"
CONFIG_FILE = "train_config.json"


@dataclass
class TrainResult:
    checkpoint: Path | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    finished: bool = True
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM (not by ``stop_after``)


@dataclass
class Splits:
    train: ClipFeatures
    val: ClipFeatures | None
    test: ClipFeatures | None
    labels: list[str]


# ----------------------------------------------------------------------------------------- setup
def prepare_data(cfg: TrainConfig, dataset: Dataset, frontend: Frontend,
                 log: Callable[[str], None] = print) -> tuple[Dataset, Splits]:
    if dataset.kind == "esc50":
        train_folds = cfg.train_folds or (1, 2, 3)
        val = None if cfg.val_fold in train_folds else cfg.val_fold
        test = None if cfg.test_fold in train_folds else cfg.test_fold
        dataset = dataset.with_folds(train_folds, val, test)
    dataset = dataset.subset(cfg.limit_per_class)
    feats = {}
    for name in ("train", "val", "test"):
        clips = dataset.split(name)
        feats[name] = clip_features(clips, frontend, desc=f"features ({name})") if clips else None
    if feats["train"] is None:
        raise DssdnError(f"{dataset.root}: no training clips")
    for label, n in silent_classes(feats["train"], dataset.labels, frontend.config.segment_frames).items():
        log(f"warning: class {label!r}: all {n} training clip(s) are digital silence; it is never learned")
    return dataset, Splits(feats["train"], feats["val"], feats["test"], list(dataset.labels))


def initial_model(cfg: TrainConfig, labels: list[str], fe: FrontendConfig, init: Checkpoint | None) -> nn.Module:
    """A fresh model, or the ``init`` checkpoint's body with a classifier for ``labels``."""
    if init is None:
        model_cfg = config_for(cfg.model, n_classes=len(labels), in_channels=fe.channels)
        return build_model(model_cfg if cfg.dropout is None else replace(model_cfg, dropout=cfg.dropout))
    model = init.model
    if cfg.dropout is not None:
        model.head.drop.p = cfg.dropout
        model.config = replace(model.config, dropout=cfg.dropout)
    if list(init.labels) != list(labels):
        fc = model.head.fc2
        model.head.fc2 = nn.Linear(fc.in_features, len(labels))  # a new classifier for the new labels
        model.config = replace(model.config, n_classes=len(labels))
    return model


def resolve_init(cfg: TrainConfig) -> Checkpoint | None:
    if cfg.init is None:
        return None
    from .model import SIZES
    from .pretrained import load_pretrained

    if cfg.init in SIZES or f"dssdn-{cfg.init}" in SIZES:
        return load_pretrained(cfg.init)
    return load_checkpoint(cfg.init)


def fit_normalization(train: ClipFeatures, seg: int, chunk: int = 256) -> Normalization:
    """``Normalization.fit`` over every non-overlapping window, in chunks of windows (two passes, float64
    sums) so that an hour-long clip is never gathered at once; equal to the one-piece fit up to float64
    rounding, which the float32 result does not see."""
    index = train.windows(seg, seg)
    n, total = 0, None
    for i in range(0, len(index), chunk):
        x = train.gather(index[i : i + chunk], seg)
        s = x.sum(axis=(0, 2), dtype=np.float64)
        total, n = (s if total is None else total + s), n + x.shape[0] * x.shape[2]
    mean = total / n
    sq = None
    for i in range(0, len(index), chunk):
        x = train.gather(index[i : i + chunk], seg)
        d = ((x - mean[None, :, None, :]) ** 2).sum(axis=(0, 2))
        sq = d if sq is None else sq + d
    std = np.maximum(np.sqrt(sq / n), 1e-3)
    return Normalization(mean.astype(np.float32), std.astype(np.float32))


def build_teacher(
    cfg: TrainConfig, dataset: Dataset, splits: Splits, fe: FrontendConfig, log: Callable[[str], None]
) -> TeacherTable | None:
    if cfg.teacher_logits and cfg.teacher:
        raise DssdnError("give either --teacher or --teacher-logits, not both")
    if cfg.teacher_logits:
        return load_teacher_file(Path(cfg.teacher_logits), dataset.split("train"), splits.train, splits.labels,
                                 fe, dataset.root, cfg.window_stride)
    if cfg.teacher:
        from .pretrained import pretrained_path

        path = pretrained_path("resnet") if cfg.teacher == "resnet" else Path(cfg.teacher)
        ckpt = load_checkpoint(path, expect_frontend=fe)
        if list(ckpt.labels) != splits.labels:
            raise DssdnError(f"{path}: the teacher's classes differ from the dataset's")
        log(f"teacher {ckpt.name}: computing its logits for every training window once")
        info = {"name": ckpt.name, "file": path.name, "sha256": ckpt.meta.get("weights_sha256"),
                "test_accuracy": ckpt.meta.get("metrics", {}).get("test_accuracy")}
        return teacher_from_checkpoint(ckpt.model, ckpt.normalization, splits.train, fe, cfg.window_stride, info)
    return None


@contextmanager
def graceful_interrupt() -> Iterator[dict[str, bool]]:
    """First Ctrl-C (or SIGTERM) asks the loop to stop at the next step boundary and save; a second one
    interrupts at once (the last saved state is still whole: saves are atomic)."""
    flag = {"stop": False}
    previous = {}

    def handler(signum, _frame):
        if flag["stop"]:
            raise KeyboardInterrupt
        flag["stop"] = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: no signal handling, plain KeyboardInterrupt
            pass
    try:
        yield flag
    finally:
        for sig, h in previous.items():
            signal.signal(sig, h)


# ----------------------------------------------------------------------------------------- the run
def check_run_dir(out_dir: Path, resume: bool, force: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DssdnError(f"{out_dir}: exists and is a file, not a run folder")
    if resume:
        if not (out_dir / STATE_FILE).is_file():
            raise DssdnError(f"{out_dir}: no {STATE_FILE} to resume from (not a run folder, or it never saved)")
        if (out_dir / STATE_FILE).stat().st_size == 0:
            raise DssdnError(f"{out_dir / STATE_FILE}: empty training state (0 bytes); the run cannot be resumed, "
                             "start it again with --force")
        return
    if out_dir.is_dir() and any(out_dir.iterdir()) and not force:
        raise DssdnError(f"{out_dir}: run folder already exists and is not empty "
                         "(use --resume to continue it, another --out, or --force to start over)")


def train(
    cfg: TrainConfig,
    out_dir: Path,
    dataset: Dataset | None = None,
    log: Callable[[str], None] = print,
    resume: bool = False,
    force: bool = False,
    stop_after: int | None = None,
    command: str | None = None,
    lock: bool = True,
    world: World | None = None,
) -> TrainResult:
    """Train (or ``resume``) a run in ``out_dir``; write ``<model>.safetensors`` + sidecar when finished.

    ``stop_after`` ends this sitting after that many epochs (the state is saved; resume later). One run at a
    time per folder (``runlock``): a second one fails at once with one line naming the first; ``lock=False``
    when the caller already holds the folder's lock (the CLI takes it before reading the data; the ``--nproc``
    launcher for all its workers). ``world`` is this process's rank among data-parallel workers; by default it
    is read from torchrun's environment (one process without it), and the process group joined here is left
    here. Only rank 0 takes the lock: it alone writes."""
    own = world is None
    world = world_from_env() if own else world
    try:
        def run() -> TrainResult:
            return _train(cfg, Path(out_dir), dataset, log if world.main else (lambda *_: None), resume, force,
                          stop_after, command, world)

        if not lock or not world.main:
            return run()
        with exclusive(out_dir, "training"):
            return run()
    finally:
        if own:
            close(world)


def read_run_config(out_dir: Path) -> dict[str, Any]:
    """The run folder's ``train_config.json``; a truncated or foreign one is one line naming it."""
    path = out_dir / CONFIG_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DssdnError(f"{path}: missing (not a run folder, or it never started)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DssdnError(f"{path}: unreadable or truncated run config ({exc})") from None
    if not isinstance(saved, dict) or not isinstance(saved.get("config"), dict):
        raise DssdnError(f"{path}: not a dssdn-edge run config (no 'config' object)")
    return saved


def _train(
    cfg: TrainConfig, out_dir: Path, dataset: Dataset | None, log: Callable[[str], None], resume: bool,
    force: bool, stop_after: int | None, command: str | None, world: World,
) -> TrainResult:
    if world.main or resume:  # the other ranks neither create nor check a fresh run folder
        check_run_dir(out_dir, resume, force)
    if resume:
        saved = read_run_config(out_dir)
        try:
            cfg = TrainConfig.from_dict(saved["config"])
        except (TypeError, ValueError) as exc:
            raise DssdnError(f"{out_dir / CONFIG_FILE}: invalid training options ({exc})") from None
        dataset = dataset or Dataset.reload(saved.get("data") or {"root": saved["data_root"]})
        command = command or saved.get("command")
    if cfg.batch_size % world.size:
        raise DssdnError(f"batch size {cfg.batch_size} does not split over {world.size} workers")
    torch.set_num_threads(cfg.threads)
    name = resolve_name(cfg.model)
    cfg = replace(cfg, model=name)
    dataset = dataset or Dataset.load()
    init = resolve_init(cfg)
    if init is not None and init.name != name:
        raise DssdnError(f"{init.path}: --init is a {init.name}, the run trains a {name}")
    fe = init.frontend_config if init else FrontendConfig()
    frontend = Frontend(fe)
    dataset, splits = prepare_data(cfg, dataset, frontend, log)
    seg = fe.segment_frames
    norm = init.normalization if init is not None and not cfg.renormalize else fit_normalization(splits.train, seg)
    teacher = build_teacher(cfg, dataset, splits, fe, log)

    torch.manual_seed(cfg.seed)
    model = initial_model(cfg, splits.labels, fe, init)
    if cfg.batchnorm not in ("global", "local"):
        raise DssdnError(f"batchnorm must be 'global' or 'local', not {cfg.batchnorm!r}")
    if world.size > 1 and cfg.batchnorm == "global":
        model = sync_batchnorm(model)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    ema = EMA(model, cfg.ema_decay) if cfg.ema_decay > 0 else None  # before the distiller's hook
    embedding = distiller = None
    if cfg.teacher_embedding:
        embedding = load_teacher_embeddings(Path(cfg.teacher_embedding), dataset.split("train"), splits.train, fe,
                                            dataset.root, cfg.window_stride)
        distiller = EmbeddingDistiller(model, int(embedding.logits.shape[-1]))
    params = list(model.parameters()) + (list(distiller.parameters()) if distiller else [])
    sync = GradientSync(world, params)
    sync.broadcast_parameters(model)
    if distiller:
        sync.broadcast_parameters(distiller)
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    batcher = Batcher(cfg, splits.train, norm, seg, float(np.log10(fe.log_eps)), teacher, embedding)
    steps = batcher.steps_per_epoch()
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: lr_lambda(s, cfg.warmup_epochs * steps, cfg.epochs * steps)
    )
    rng = np.random.default_rng(cfg.seed)
    st: dict[str, Any] = {"epoch": 0, "step": 0, "plan": None, "history": [], "best": (-1.0, 0),
                          "best_state": None, "seconds": 0.0, "windows_seen": 0, "sums": [0.0, 0.0, 0]}
    if resume:
        load_state(out_dir / STATE_FILE, model, opt, sched, ema, rng, st, distiller)
        log(f"resuming {out_dir} at epoch {st['epoch'] + 1} step {st['step']} of {cfg.epochs} epochs"
            + (f" on {world.size} workers" if world.size > 1 else ""))
    elif world.main:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(out_dir / CONFIG_FILE, {"config": cfg.to_dict(), "data": dataset.reload_spec(),
                                           "command": command})
    eval_model = (lambda: ema.model) if ema else (lambda: model)
    has_val = splits.val is not None
    last_save = time.time()
    session_start, session_epochs = time.time(), 0
    stopped = vote = False

    def save() -> None:
        st["seconds"] = st["seconds_base"] + time.time() - session_start
        if world.main:
            save_state(out_dir / STATE_FILE, model, opt, sched, ema, rng, st, distiller)

    st["seconds_base"] = st["seconds"]
    with graceful_interrupt() as interrupt, progress_bar() as bar:
        task = bar.add_task(f"train {name}", total=cfg.epochs * steps, completed=st["epoch"] * steps + st["step"],
                            info="")
        while st["epoch"] < cfg.epochs:
            epoch = st["epoch"] + 1
            if st["plan"] is None:
                st["plan"], st["step"], st["sums"] = batcher.epoch_plan(rng), 0, [0.0, 0.0, 0]
            model.train()
            set_trainable(model, head_only=epoch <= cfg.freeze_epochs)
            plan = st["plan"]
            while st["step"] < len(plan):
                if vote or (world.size == 1 and interrupt["stop"]):
                    stopped = True
                    break
                gen = seed_step(cfg.seed, epoch, st["step"], world.rank)
                rows = world.shard(plan[st["step"]])
                x, y, t = batcher.batch(rows, gen)
                kept = [b.clone() for b in model.buffers()] if world.size > 1 else []
                try:
                    loss, logits = train_step(model, x, y, t, cfg, gen, distiller, batcher.embeddings(rows))
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    local = [loss.item() * len(y), (logits.argmax(1) == y).sum().item(), len(y),
                             float(interrupt["stop"] or world.parent_gone())]
                    loss_sum, correct, count, votes = sync(local)
                except PeerLost as exc:  # the step never happened: put back its BatchNorm statistics, save
                    torch._foreach_copy_(list(model.buffers()), kept)
                    save()
                    raise PeerLost(f"{out_dir}: {exc} at epoch {epoch} step {st['step']}"
                                   + ("; state saved: resume with `dssdn-edge train --resume "
                                      f"{out_dir}`" if world.main else "")) from None
                vote = votes > 0
                opt.step()
                sched.step()
                if ema:
                    ema.update(model)
                st["step"] += 1
                st["windows_seen"] += int(count)
                sums = st["sums"]
                sums[0] += loss_sum
                sums[1] += correct
                sums[2] += int(count)
                bar.update(task, advance=1, info=f"epoch {epoch} loss {sums[0] / sums[2]:.3f}")
                if time.time() - last_save > cfg.checkpoint_minutes * 60:
                    save()
                    last_save = time.time()
            if stopped:
                break
            sums = st["sums"]
            row: dict[str, Any] = {"epoch": epoch, "loss": sums[0] / sums[2], "train_accuracy_mixed": sums[1] / sums[2],
                                   "lr": sched.get_last_lr()[0], "windows_seen": st["windows_seen"]}
            if world.main and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
                m = eval_model()
                if has_val:
                    row["val_accuracy"] = accuracy(m, splits.val, norm, seg, cfg.eval_stride)
                    if row["val_accuracy"] > st["best"][0]:
                        st["best"] = (row["val_accuracy"], epoch)
                        st["best_state"] = {k: v.detach().clone() for k, v in m.state_dict().items()}
                log(epoch_line(epoch, cfg.epochs, row))
            row["seconds"] = round(st["seconds_base"] + time.time() - session_start, 1)
            st["history"].append(row)
            st["epoch"], st["plan"] = epoch, None
            session_epochs += 1
            if stop_after is not None and session_epochs >= stop_after and st["epoch"] < cfg.epochs:
                stopped = True
                break
    save()
    if sync.calls:
        log(f"{world.size} workers: all-reduce of the gradients {1e3 * sync.seconds / sync.calls:.1f} ms per step")
    if stopped:
        log(f"stopped at epoch {st['epoch'] + (1 if st['plan'] is not None else 0)} step {st['step']} "
            f"(state saved): resume with `dssdn-edge train --resume {out_dir}`")
        return TrainResult(None, st["history"], st["best"][1], {}, st["seconds"], finished=False,
                           interrupted=vote or interrupt["stop"])
    if not world.main:
        return TrainResult(None, st["history"], 0, {}, st["seconds"])
    return finish(cfg, out_dir, name, dataset, splits, norm, fe, model, ema, st, teacher, command, log)


def epoch_line(epoch: int, total: int, row: dict[str, Any]) -> str:
    text = f"epoch {epoch:4d}/{total}  loss {row['loss']:.4f}  lr {row['lr']:.2e}"
    if "val_accuracy" in row:
        text += f"  val acc {row['val_accuracy']:.3f}"
    return text


def finish(
    cfg: TrainConfig, out_dir: Path, name: str, dataset: Dataset, splits: Splits, norm: Normalization,
    fe: FrontendConfig, model: nn.Module, ema: EMA | None, st: dict[str, Any], teacher: TeacherTable | None,
    command: str | None, log: Callable[[str], None],
) -> TrainResult:
    """Pick the weights (best val epoch, or the last when there is no val split), score every split,
    write the checkpoint, the history and its plot."""
    final = copy.deepcopy(ema.model if ema else model).eval().to(memory_format=torch.contiguous_format)
    selected = "last epoch"
    if st["best_state"] is not None:
        final.load_state_dict(st["best_state"])
        selected = f"best val epoch ({st['best'][1]})"
    metrics: dict[str, Any] = {"selected": selected, "best_epoch": st["best"][1] if st["best_state"] else cfg.epochs}
    for split in ("train", "val", "test"):
        feats = getattr(splits, split)
        if feats is not None:
            metrics[f"{split}_accuracy"] = accuracy(final, feats, norm, fe.segment_frames, cfg.eval_stride)
    metrics["eval"] = (f"clip level (mean of 1-s window logits, stride {cfg.eval_stride} frames); "
                       f"{split_description(dataset, cfg)}")
    seconds = st["seconds"]
    meta = {
        "metrics": metrics,
        "training": {**cfg.to_dict(), "seconds": round(seconds, 1), "windows_seen": st["windows_seen"],
                     "command": command, "teacher_info": teacher.info if teacher else None},
        "data": {"name": dataset.description, "licence": dataset.licence, **dataset.reload_spec(),
                 "clips": {s: len(dataset.split(s)) for s in ("train", "val", "test")}},
    }
    ckpt_path = out_dir / f"{name}.safetensors"
    model_cfg = final.config
    dtype = torch.float16 if model_cfg.arch == "resnet" else torch.float32
    write_json(out_dir / "history.json", st["history"])
    plot_history(st["history"], out_dir / "history.png", name)
    # the checkpoint last: it is what marks a finished run
    save_checkpoint(ckpt_path, name, final, model_cfg, fe, norm, splits.labels, meta, dtype)
    log(summary(name, metrics, seconds, ckpt_path))
    return TrainResult(ckpt_path, st["history"], metrics["best_epoch"], metrics, seconds)


def split_description(dataset: Dataset, cfg: TrainConfig) -> str:
    if dataset.kind == "esc50":
        folds = cfg.train_folds or (1, 2, 3)
        val = None if cfg.val_fold in folds else cfg.val_fold
        return (f"train = folds {', '.join(map(str, folds))}" + (f", val = fold {val}" if val else "")
                + (f", test = fold {cfg.test_fold}" if cfg.test_fold not in folds else ""))
    counts = ", ".join(f"{s} {len(dataset.split(s))} clips" for s in ("train", "val", "test"))
    return f"{dataset.kind} dataset: {counts}"


def summary(name: str, metrics: dict[str, Any], seconds: float, path: Path) -> str:
    accs = "  ".join(f"{s} {metrics[f'{s}_accuracy']:.2%}" for s in ("train", "val", "test")
                     if f"{s}_accuracy" in metrics)
    return (f"{name}: {metrics['selected']}; clip accuracy  {accs}\n"
            f"trained {seconds / 60:.1f} min -> {path}\n"
            f"next: dssdn-edge export --checkpoint {path} --int8")


__all__ = ["TrainConfig", "TrainResult", "train"]
