"""An audio file as a stream of 1-s feature windows, in memory that does not grow with the file.

``predict`` on a one-hour recording must not hold the hour (230 MB of float32 samples, gigabytes of
features) in memory: a Raspberry Pi has 1–8 GB. Here the file is read in blocks, downmixed, resampled
exactly as ``load_audio`` does for the whole file (polyphase, the same filter; each block is filtered with
enough margin that its samples equal the whole-file result), fed to ``Frontend.stream`` (which equals the
offline front end), and cut into windows by the rule of ``data.window_starts`` (every ``stride`` frames,
all-zero windows dropped, a clip shorter than one window zero-padded to one). Only a few seconds of audio
and features are held at any time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .audio import check_audio_file, decode_problem, quiet_decoder
from .errors import AudioError
from .frontend import Frontend, FrontendConfig
from .progress import progress_bar

BLOCK_SECONDS = 10.0
LONG_FILE_SECONDS = 120.0  # files at least this long get a progress bar


class ChunkResampler:
    """``resample_poly(x, up, down)`` of a signal that arrives in pieces, equal to the whole-signal result.

    Each call filters the buffered input again from a point ``margin`` samples before the first output it
    still owes, so every output sees exactly the inputs (and, at the true ends, the zero padding) it sees
    in one whole-signal call. The buffer always starts at a multiple of ``down``, where output positions
    are whole numbers."""

    def __init__(self, up: int, down: int) -> None:
        self.up, self.down = up, down
        self.margin = math.ceil(10 * max(up, down) / up) + 2  # filter half-length in input samples
        self.buf = np.zeros(0, np.float32)
        self.offset = 0  # global index of buf[0] (a multiple of down)
        self.emitted = 0  # outputs already returned

    def push(self, x: np.ndarray, final: bool = False) -> np.ndarray:
        if self.up == self.down:
            return x
        self.buf = np.concatenate([self.buf, x.astype(np.float32)])
        end = self.offset + len(self.buf)
        if final:
            last = -(-end * self.up // self.down)  # ceil: the whole-signal output length
        else:
            last = max(0, (end - self.margin) * self.up // self.down)
        if last <= self.emitted or not len(self.buf):
            return np.zeros(0, np.float32)
        y = resample_poly(self.buf, self.up, self.down).astype(np.float32)
        first_local = self.emitted - self.offset * self.up // self.down
        out = y[first_local : last - self.offset * self.up // self.down]
        self.emitted = last
        # drop inputs no later output can need (keep a margin before the next output's centre)
        keep_from = max(self.offset, (self.emitted * self.down // self.up - self.margin) // self.down * self.down)
        self.buf = self.buf[keep_from - self.offset :]
        self.offset = keep_from
        return out


class SilenceTracker:
    """Per frame, whether its analysis window saw only exact zeros (``data.silent_frames``, streamed)."""

    def __init__(self, cfg: FrontendConfig) -> None:
        self.cfg = cfg
        self.flags = np.zeros(cfg.n_fft // 2, bool)  # the centre padding at the start
        self.offset = 0  # padded-signal index of flags[0]
        self.frame = 0  # next frame to decide

    def push(self, audio: np.ndarray, final: bool = False) -> np.ndarray:
        cfg = self.cfg
        self.flags = np.concatenate([self.flags, audio != 0])
        if final:
            self.flags = np.concatenate([self.flags, np.zeros(cfg.n_fft // 2, bool)])
        end = self.offset + len(self.flags)
        n = max(0, (end - cfg.n_fft) // cfg.hop_length + 1 - self.frame)
        if not n:
            return np.zeros(0, bool)
        counts = np.concatenate([[0], np.cumsum(self.flags)])
        starts = (self.frame + np.arange(n)) * cfg.hop_length - self.offset
        silent = (counts[starts + cfg.n_fft] - counts[starts]) == 0
        self.frame += n
        drop = self.frame * cfg.hop_length - self.offset
        self.flags = self.flags[drop:]
        self.offset += drop
        return silent


@dataclass
class WindowBatch:
    windows: np.ndarray  # (k, channels, frames, bands) unnormalised features
    starts: np.ndarray  # (k,) first frame of each window
    silent: np.ndarray  # (k,) bool: the window saw only digital zeros (only with ``keep_silent``)
    audio: np.ndarray | None = None  # (k, segment samples) the windows' own samples (with ``with_audio``)


def read_blocks(path: Path, block_seconds: float = BLOCK_SECONDS) -> tuple[int, Iterator[np.ndarray]]:
    """The file's rate and an iterator of mono float32 blocks; every problem is an ``AudioError``."""
    path = check_audio_file(path)
    try:
        with quiet_decoder():
            info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
        raise AudioError(f"{path}: {decode_problem(exc)}") from None
    rate = int(info.samplerate)
    block = max(1, int(block_seconds * rate))
    seconds = info.frames / rate if rate > 0 else 0.0

    def mono() -> Iterator[np.ndarray]:
        try:
            for data in sf.blocks(str(path), blocksize=block, dtype="float32", always_2d=True):
                yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
        except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as exc:
            raise AudioError(f"{path}: {decode_problem(exc)}") from None

    def blocks() -> Iterator[np.ndarray]:
        if seconds < LONG_FILE_SECONDS:
            yield from mono()
            return
        with progress_bar() as bar:  # a long recording shows how far it is (an 18-h WAV takes minutes)
            task = bar.add_task(path.name, total=round(seconds), info="s of audio")
            for data in mono():
                bar.advance(task, len(data) / rate)
                yield data

    return rate, blocks()


def audio_seconds(path: str | Path) -> float:
    """The duration soundfile reads from the header (0 when unknown; errors surface when it is read)."""
    try:
        with quiet_decoder():
            info = sf.info(str(check_audio_file(Path(path))))
        return info.frames / info.samplerate if info.samplerate > 0 else 0.0
    except (AudioError, sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return 0.0


def resampled_blocks(path: str | Path, sample_rate: int, min_samples: int = 1,
                     block_seconds: float = BLOCK_SECONDS) -> Iterator[np.ndarray]:
    """The file as mono float32 blocks at ``sample_rate`` — the samples ``load_audio`` would return, in
    pieces; the last block (possibly empty) is yielded after every check passed. NaN/Inf, an empty file or
    fewer than ``min_samples`` samples are an ``AudioError`` naming the file."""
    path = Path(path)
    rate, blocks = read_blocks(path, block_seconds)
    ratio = Fraction(sample_rate, rate)
    resampler = ChunkResampler(ratio.numerator, ratio.denominator)
    raw = out = 0
    for block in blocks:
        raw += len(block)
        if not np.isfinite(block).all():
            raise AudioError(f"{path}: audio contains NaN/Inf samples")
        y = resampler.push(block)
        out += len(y)
        if len(y):
            yield y
    if raw == 0:
        raise AudioError(f"{path}: empty audio (0 samples)")
    tail = resampler.push(np.zeros(0, np.float32), final=True)
    if out + len(tail) < min_samples:
        raise AudioError(f"{path}: too short ({out + len(tail)} samples at {sample_rate} Hz, "
                         f"need at least {min_samples})")
    yield tail


def file_windows(
    path: str | Path, frontend: Frontend, stride: int, batch: int = 32, allow_silent: bool = False,
    block_seconds: float = BLOCK_SECONDS, keep_silent: bool = False, with_audio: bool = False,
) -> Iterator[WindowBatch]:
    """Batches of the file's non-silent 1-s windows, every ``stride`` frames, in bounded memory.

    ``keep_silent`` yields the all-zero windows too, flagged in ``WindowBatch.silent``; ``allow_silent``
    accepts a file without any non-silent window; ``with_audio`` adds each window's samples with the context its
    features read (what the waveform-in phone file takes, ``export/phone.py``): ``context_samples`` starting
    ``context_offset`` samples before the window's first frame position, zero-filled before the file's start
    and past its end — the zeros of the offline centre padding, so the input decides exactly the window's
    features. Only that much audio past the last emitted window is kept."""
    path = Path(path)
    cfg = frontend.config
    stream, silence = frontend.stream(), SilenceTracker(cfg)
    seg = cfg.segment_frames
    feats = np.zeros((0, cfg.channels, cfg.n_mels), np.float32)
    silent = np.zeros(0, bool)
    f_off = s_off = 0  # global frame index of feats[0] / silent[0]
    next_start, total, kept = 0, 0, 0
    pending: list[tuple[int, np.ndarray, bool, np.ndarray | None]] = []
    samples, a_off = np.zeros(0, np.float32), 0  # raw audio (with_audio); global index of samples[0]
    n_win, lead, hop = cfg.context_samples, cfg.context_offset, cfg.hop_length

    def drain(final: bool) -> Iterator[WindowBatch]:
        nonlocal feats, silent, f_off, s_off, next_start, kept, samples, a_off
        while next_start + seg <= f_off + len(feats) and next_start + seg <= s_off + len(silent):
            s = next_start
            if with_audio and not final and s * hop - lead + n_win > a_off + len(samples):
                break  # its context's end has not arrived yet (never at the defaults: the delta waits for it)
            quiet = bool(silent[s - s_off : s - s_off + seg].all())
            if not quiet:
                kept += 1
            if not quiet or keep_silent:
                piece = None
                if with_audio:
                    piece = np.zeros(n_win, np.float32)
                    first = s * hop - lead  # global index of piece[0]; negative before the file's start
                    part = samples[max(first, a_off) - a_off : first + n_win - a_off]
                    piece[max(first, a_off) - first : max(first, a_off) - first + len(part)] = part
                pending.append((s, feats[s - f_off : s - f_off + seg].transpose(1, 0, 2), quiet, piece))
            next_start += stride
            if len(pending) >= batch:
                yield _batch(pending)
        # keep only what a later window can still use
        cut_f = min(next_start, f_off + len(feats)) - f_off
        feats, f_off = feats[cut_f:], f_off + cut_f
        cut_s = min(next_start, s_off + len(silent)) - s_off
        silent, s_off = silent[cut_s:], s_off + cut_s
        if with_audio:
            cut_a = min(max(next_start * hop - lead, a_off), a_off + len(samples)) - a_off
            samples, a_off = samples[cut_a:], a_off + cut_a
        if final and pending:
            yield _batch(pending)

    def feed(audio: np.ndarray, final: bool) -> None:
        nonlocal feats, silent, total, samples
        total += len(audio)
        if with_audio:
            samples = np.concatenate([samples, audio])
        new = stream.push(audio) if len(audio) else np.zeros((0, cfg.channels, cfg.n_mels), np.float32)
        if final:
            new = np.concatenate([new, stream.flush()])
        feats = np.concatenate([feats, new])
        silent = np.concatenate([silent, silence.push(audio, final)])

    blocks = resampled_blocks(path, cfg.sample_rate, cfg.hop_length, block_seconds)
    previous = next(blocks)
    for block in blocks:  # one block behind, so the last one is fed with ``final``
        feed(previous, final=False)
        yield from drain(False)
        previous = block
    if total + len(previous) < cfg.segment_samples:  # a short clip is zero-padded to one window
        previous = np.concatenate([previous, np.zeros(cfg.segment_samples - total - len(previous), np.float32)])
    feed(previous, final=True)
    yield from drain(True)
    if kept == 0 and not (allow_silent or keep_silent):
        raise AudioError(f"{path}: audio is all digital silence (no non-zero 1-s window)")


def _batch(pending: list[tuple[int, np.ndarray, bool, np.ndarray | None]]) -> WindowBatch:
    starts = np.asarray([p[0] for p in pending], np.int64)
    windows = np.stack([p[1] for p in pending]).astype(np.float32)
    silent = np.asarray([p[2] for p in pending], bool)
    audio = np.stack([p[3] for p in pending]) if pending[0][3] is not None else None
    pending.clear()
    return WindowBatch(windows, starts, silent, audio)
