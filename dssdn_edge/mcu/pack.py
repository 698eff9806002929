"""Bit-packing of a conv's or FC's per-output-channel constants (folded bias, multiplier, shift).

Stored plainly they cost 9 bytes a channel (int32 bias, int32 multiplier, int8 shift), 14 KB of dssdn-small's
80 KB of constants, although each op needs far fewer bits: its biases span ~15-21 bits, a multiplier from
QuantizeMultiplier always has bit 30 set (it lies in [2^30, 2^31)), so 30 bits carry it, and an op's shifts
take a handful of neighbouring values, so ``shift - shift_min`` fits 0-3 bits. Per channel the generator
writes ``bias_bits`` bits of bias (two's complement), then, for the channels that have their own
multiplier (all of them, or only the first with per-tensor quantisation), ``mult_bits`` bits of multiplier
and ``shift_bits`` bits of ``shift - shift_min``, least significant bit first, into little-endian uint32 words.
``dssdn_chan_unpack`` in dssdn_kernels.c reads them back once per op call into the op's work area (arena bytes
free while it runs, see ``plan.work_area``), so the per-output arithmetic is unchanged: the layout saves
flash, not instructions in the hot loops.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

IMPLIED_BIT = 1 << 30  # set in every multiplier QuantizeMultiplier returns, unless it is 0


@dataclass
class PackedChannels:
    words: np.ndarray  # uint32
    bias_bits: int  # 0: no bias (the kernel adds 0)
    mult_bits: int  # 30: bit 30 implied (set by the kernel); 31: stored whole
    shift_bits: int
    shift_min: int

    def fields(self) -> dict[str, int]:
        return {"bias_bits": self.bias_bits, "mult_bits": self.mult_bits, "shift_bits": self.shift_bits,
                "shift_min": self.shift_min}


def signed_bits(values: np.ndarray) -> int:
    """Bits of the narrowest two's complement field that holds every value (0 for an empty array)."""
    if values.size == 0:
        return 0
    lo, hi = int(values.min()), int(values.max())
    return max(hi.bit_length(), (-lo - 1).bit_length()) + 1


def pack_fields(fields: Iterable[tuple[int, int]]) -> np.ndarray:
    """(value, width) fields, each ``value`` already masked to ``width`` bits, one after the other from bit 0 of
    little-endian uint32 words: the stream dssdn_chan_unpack and dssdn_logistic_lut read (dssdn_kernels.c)."""
    acc, n, words = 0, 0, []
    for v, w in fields:
        acc |= v << n
        n += w
        while n >= 32:
            words.append(acc & 0xFFFFFFFF)
            acc >>= 32
            n -= 32
    if n:
        words.append(acc)
    return np.asarray(words, np.uint32)


def pack_channels(bias: np.ndarray | None, mults: list[int], shifts: list[int]) -> PackedChannels:
    """The bit stream of ``bias`` (one per channel, or None) and the ``len(mults)`` (multiplier, shift) pairs."""
    m = np.asarray(mults, np.int64)
    if m.min() < 0 or m.max() >= 1 << 31:
        raise ValueError("a requantisation multiplier outside [0, 2^31)")
    mult_bits = 30 if bool(np.all((m >> 30) == 1)) else 31
    s = np.asarray(shifts, np.int64)
    shift_min = int(s.min())
    shift_bits = int(s.max() - shift_min).bit_length()
    b = np.zeros(0, np.int64) if bias is None else np.asarray(bias, np.int64)
    bias_bits = signed_bits(b)
    fields = []
    for c in range(max(len(b), len(m))):
        if bias_bits:
            fields.append((int(b[c]) & ((1 << bias_bits) - 1), bias_bits))
        if c < len(m):
            fields.append((int(m[c]) & ((1 << mult_bits) - 1), mult_bits))
            fields.append((int(s[c]) - shift_min, shift_bits))
    return PackedChannels(pack_fields(fields), bias_bits, mult_bits, shift_bits, shift_min)


def unpack_channels(p: PackedChannels, channels: int, n_mult: int) -> tuple[list[int], list[int], list[int]]:
    """The inverse of ``pack_channels`` (as ``dssdn_chan_unpack`` in C does it): (biases, multipliers, shifts)."""
    stream = int.from_bytes(np.asarray(p.words, "<u4").tobytes(), "little")
    pos = 0

    def take(w: int) -> int:
        nonlocal pos
        v = (stream >> pos) & ((1 << w) - 1)
        pos += w
        return v

    biases, mults, shifts = [], [], []
    for c in range(channels):
        v = take(p.bias_bits)
        biases.append(v - (1 << p.bias_bits) if p.bias_bits and v >> (p.bias_bits - 1) else v)
        if c < n_mult:
            mults.append(take(p.mult_bits) | (IMPLIED_BIT if p.mult_bits == 30 else 0))
            shifts.append(take(p.shift_bits) + p.shift_min)
    return biases, mults, shifts


def work_bytes(channels: int, n_mult: int) -> int:
    """Bytes ``dssdn_chan_unpack`` writes into an op's work area: int32 biases, int32 multipliers, int8 shifts."""
    return 4 * channels + 4 * n_mult + n_mult
