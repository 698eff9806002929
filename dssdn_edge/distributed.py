"""Data-parallel training on ``torch.distributed`` (gloo, CPU): the process group, gradient averaging,
BatchNorm statistics over the global batch, per-step random streams, and a local launcher.

Why these choices:

* **One flat all-reduce per step** (every gradient, plus the step's loss/accuracy sums and the stop flag,
  in one float32 buffer) instead of ``DistributedDataParallel``'s hooks. It is DDP's gradient averaging
  with one bucket: on CPU the ranks share the cores that an overlapped all-reduce would need, so overlap buys
  nothing; it keeps ``--freeze-epochs`` working (DDP must be rebuilt when ``requires_grad`` changes), it
  makes every rank agree to stop on the same step (Ctrl-C on any rank), and the cost is one timed call.
* **BatchNorm over the global batch** (:class:`SyncBatchNorm2d`; torch's ``SyncBatchNorm`` is CUDA-only).
  With per-rank statistics the result would depend on the number of ranks (at 8 ranks a batch of 64 is
  normalised in groups of 8), so a run resumed with another ``--nproc`` would continue a different training.
  With global statistics a step on N ranks × B/N windows equals a step on one rank × B windows to float
  precision (tests/test_distributed.py). Cost: one small all-reduce per BatchNorm in forward and one in
  backward (measured in benchmarks/results/train_speed.md).
* **Random streams**: the epoch's crop plan comes from one generator seeded by the run seed and stored in
  the state, identical on every rank, and each rank takes its slice of every global batch. Augmentation
  (gain, masks, mixing) and dropout draw from generators seeded by (seed, epoch, step, rank), so a resumed run with
  the same number of ranks continues bit for bit, with another number of ranks it continues consistently.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from .errors import DssdnError

TIMEOUT_ENV = "DSSDN_DIST_TIMEOUT_S"  # seconds a collective may wait for a silent peer
DEFAULT_TIMEOUT_S = 600.0  # above the longest pause of rank 0 (evaluating fold 4 between epochs)
LAUNCHED_ENV = "DSSDN_LAUNCHED"  # set by :func:`launch`: the parent reports failures
PARENT_ENV = "DSSDN_PARENT_PID"
COMMAND_ENV = "DSSDN_TRAIN_COMMAND"
PEER_LOST_EXIT = 75  # a worker's exit status when it stopped because another worker went away
SETTLE_S = 5.0  # after a failure, how long the others may take to end by themselves before SIGTERM
GRACE_S = 30.0  # after that SIGTERM, how long they may take to save and exit before they are killed


class PeerLost(DssdnError):
    """A collective failed: another worker died, was killed, or stopped answering."""


@dataclass(frozen=True)
class World:
    """This process's place among the training workers (rank 0 alone writes files)."""

    rank: int = 0
    size: int = 1
    parent_pid: int | None = None  # the launcher that started this worker, watched for its death

    @property
    def main(self) -> bool:
        return self.rank == 0

    def shard(self, rows: np.ndarray) -> np.ndarray:
        """This rank's contiguous slice of one global batch."""
        per = len(rows) // self.size
        return rows[self.rank * per : (self.rank + 1) * per]

    def parent_gone(self) -> bool:
        return self.parent_pid is not None and os.getppid() != self.parent_pid


def world_from_env() -> World:
    """Join the process group named by torchrun's (or :func:`launch`'s) environment; one process without it."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    timeout = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    if not dist.is_initialized():
        try:
            dist.init_process_group("gloo", timeout=timedelta(seconds=timeout))
        except (RuntimeError, ValueError) as exc:
            raise PeerLost(f"cannot join the training workers ({first_line(exc)})") from None
    parent = os.environ.get(PARENT_ENV)
    return World(dist.get_rank(), dist.get_world_size(), int(parent) if parent else None)


def close(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def all_reduce_sum(t: torch.Tensor) -> None:
    """Sum ``t`` over all ranks in place; a lost or silent peer becomes :class:`PeerLost`."""
    try:
        dist.all_reduce(t)
    except RuntimeError as exc:
        raise PeerLost(f"a training worker was lost ({first_line(exc)})") from None


def seed_step(seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """The random streams of one step on one rank, independent across ranks and steps and needing no saved
    state (a resumed run recreates them from its position): the returned generator draws the augmentation,
    the global one (re-seeded here) draws dropout."""
    aug, drop = np.random.SeedSequence([seed, epoch, step, rank]).generate_state(2, np.uint64)
    torch.manual_seed(int(drop >> np.uint64(1)))
    return torch.Generator().manual_seed(int(aug >> np.uint64(1)))


@dataclass
class GradientSync:
    """Averages gradients over the ranks and sums the step's statistics, in one all-reduce."""

    world: World
    params: list[nn.Parameter]
    seconds: float = 0.0  # time spent in the all-reduce (the communication cost of data parallelism)
    calls: int = 0
    _shapes: list[torch.Size] = field(default_factory=list)

    def __call__(self, stats: Sequence[float]) -> list[float]:
        if self.world.size == 1:
            return list(stats)
        grads = [p.grad for p in self.params if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads] + [torch.tensor(stats, dtype=grads[0].dtype)])
        t0 = time.perf_counter()
        all_reduce_sum(flat)
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        n = flat.numel() - len(stats)
        flat[:n].div_(self.world.size)
        chunks = torch.split(flat[:n], [g.numel() for g in grads])
        torch._foreach_copy_(grads, [c.view(g.shape) for c, g in zip(chunks, grads, strict=True)])
        return flat[n:].tolist()

    def broadcast_parameters(self, model: nn.Module) -> None:
        """Make every rank start from rank 0's weights (they already agree when seeded alike; this makes sure)."""
        if self.world.size == 1:
            return
        try:
            for t in list(model.parameters()) + list(model.buffers()):
                dist.broadcast(t.data, 0)
        except RuntimeError as exc:
            raise PeerLost(f"a training worker was lost ({first_line(exc)})") from None


# ------------------------------------------------------------------------------ global BatchNorm
class _SyncBatchNormFn(torch.autograd.Function):
    """Batch normalisation with statistics over every rank's part of the batch (one all-reduce each way)."""

    @staticmethod
    def forward(ctx, x, weight, bias, shift, eps):  # noqa: ANN001, ANN205
        c = x.shape[1]
        xs = x - shift.view(1, c, 1, 1)  # shifted by the running mean (same on every rank): no cancellation
        buf = torch.cat([xs.sum((0, 2, 3)), (xs * xs).sum((0, 2, 3)), x.new_tensor([x.numel() / c])])
        all_reduce_sum(buf)
        n = buf[-1]
        mean_s = buf[:c] / n
        var = (buf[c : 2 * c] / n - mean_s * mean_s).clamp_min(0)
        mean = mean_s + shift
        invstd = torch.rsqrt(var + eps)
        scale = weight * invstd
        y = x * scale.view(1, c, 1, 1) + (bias - mean * scale).view(1, c, 1, 1)
        ctx.save_for_backward(x, weight, mean, invstd)
        ctx.n = n
        unbiased = var * (n / (n - 1)).clamp_min(0)
        ctx.mark_non_differentiable(mean, unbiased)
        return y, mean, unbiased

    @staticmethod
    def backward(ctx, gy, _gmean, _gvar):  # noqa: ANN001, ANN205
        x, weight, mean, invstd = ctx.saved_tensors
        c = x.shape[1]
        xhat = (x - mean.view(1, c, 1, 1)) * invstd.view(1, c, 1, 1)
        sum_g = gy.sum((0, 2, 3))
        sum_gx = (gy * xhat).sum((0, 2, 3))
        buf = torch.cat([sum_g, sum_gx])
        all_reduce_sum(buf)
        n = ctx.n
        k = (weight * invstd).view(1, c, 1, 1)
        gx = k * (gy - (buf[:c] / n).view(1, c, 1, 1) - xhat * (buf[c:] / n).view(1, c, 1, 1))
        return gx, sum_gx, sum_g, None, None


class SyncBatchNorm2d(nn.BatchNorm2d):
    """``BatchNorm2d`` whose training statistics cover the global batch when several ranks train; the same
    parameters and buffers (checkpoints are unchanged), the plain layer in eval mode or on one rank."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        y, mean, var = _SyncBatchNormFn.apply(x, self.weight, self.bias, self.running_mean.detach(), self.eps)
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked + 1)
            self.running_mean.lerp_(mean, m)
            self.running_var.lerp_(var, m)
            self.num_batches_tracked.add_(1)
        return y


def sync_batchnorm(model: nn.Module) -> nn.Module:
    """Swap every ``BatchNorm2d`` for :class:`SyncBatchNorm2d` in place, keeping its parameters and buffers
    (call before the optimiser is built)."""
    for name, child in list(model.named_children()):
        if type(child) is nn.BatchNorm2d:
            new = SyncBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                  child.track_running_stats)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(model, name, new)
        else:
            sync_batchnorm(child)
    return model


# ------------------------------------------------------------------------------------ launcher
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Worker:
    rank: int
    proc: subprocess.Popen
    tail: deque = field(default_factory=lambda: deque(maxlen=20))
    ended_at: float | None = None


def _drain(worker: _Worker) -> None:
    assert worker.proc.stderr is not None
    for line in worker.proc.stderr:
        if line.strip():
            worker.tail.append(line.rstrip())


def launch(argv: Sequence[str], nproc: int, command: str) -> tuple[int, str | None]:
    """Run ``python -m dssdn_edge <argv>`` as ``nproc`` local workers of one process group on 127.0.0.1.

    The parent forwards Ctrl-C / SIGTERM once (the workers then agree on a step, rank 0 saves, they exit
    130), watches its children, and when one fails lets the others end by themselves, then asks them to
    save and exit (SIGTERM), then kills them: a lost worker never leaves a hang. Returns the exit status and,
    when the parent has to explain a failure, the message (rank 0's own errors are already on stderr)."""
    port = free_port()
    base = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
            "LOCAL_WORLD_SIZE": str(nproc), LAUNCHED_ENV: "1", PARENT_ENV: str(os.getpid()), COMMAND_ENV: command}
    workers: list[_Worker] = []
    for rank in range(nproc):
        env = {**base, "RANK": str(rank), "LOCAL_RANK": str(rank)}
        if rank:
            env["DSSDN_PROGRESS"] = "0"
        proc = subprocess.Popen(
            [sys.executable, "-m", "dssdn_edge", *argv], env=env, start_new_session=True,
            stdout=None if rank == 0 else subprocess.DEVNULL, stderr=None if rank == 0 else subprocess.PIPE,
            text=True,
        )
        w = _Worker(rank, proc)
        if rank:
            threading.Thread(target=_drain, args=(w,), daemon=True).start()
        workers.append(w)

    def forward(signum, _frame):  # noqa: ANN001
        for w in workers:
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    failed: _Worker | None = None
    term_at = kill_at = float("inf")

    def first_failure() -> _Worker | None:
        now = time.time()
        for w in workers:
            code = w.proc.poll()
            if code is not None and w.ended_at is None:
                w.ended_at = now
        ended = [w for w in workers if w.ended_at is not None and w.proc.returncode not in (0, 130, PEER_LOST_EXIT)]
        return min(ended, key=lambda w: (w.ended_at, w.rank)) if ended else None

    try:
        while any(w.proc.poll() is None for w in workers):
            now = time.time()
            failed = first_failure()
            if failed is not None and kill_at == float("inf"):
                # an error every rank meets (a bad option) ends them all by itself, each with its own line; a
                # crash leaves the others in a collective that fails at once: give both a moment first
                term_at, kill_at = now + SETTLE_S, now + SETTLE_S + GRACE_S
            if now > term_at:
                term_at = float("inf")  # once
                for w in workers:
                    if w.proc.poll() is None:
                        w.proc.send_signal(signal.SIGTERM)
            if now > kill_at:
                for w in workers:
                    if w.proc.poll() is None:
                        w.proc.kill()
            time.sleep(0.1)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    for w in workers:
        w.proc.wait()
    failed = failed or first_failure()
    codes = [w.proc.returncode for w in workers]
    if failed is None:
        lost = [w for w in workers if w.proc.returncode == PEER_LOST_EXIT]
        if not lost:
            return (130 if 130 in codes else 0), None
        failed = lost[0]
    if workers[0].proc.returncode == 1:
        return 1, None  # rank 0 printed its own one-line error (the others' are the same or a consequence)
    return 1, f"worker {failed.rank} of {nproc} {describe_exit(failed)}"


def describe_exit(w: _Worker) -> str:
    code = w.proc.returncode
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    last = next((line for line in reversed(w.tail) if line.startswith("error:")), None) or \
        (w.tail[-1] if w.tail else "")
    return f"failed (exit {code}{': ' + last.removeprefix('error: ') if last else ''})"


def state_note(out_dir: Path, state_file: str) -> str:
    if (out_dir / state_file).is_file():
        return f"resume from the last saved state with `dssdn-edge train --resume {out_dir}`"
    return "no training state was saved yet"
