"""A static activation memory plan for one graph: where every activation lives in one arena.

Three things make it smaller than TFLM's greedy plan of whole tensors:

- **Views instead of copies.** RESHAPE is the same bytes. A SLICE is a pointer offset when the slice is
  contiguous, and a strided view (row and pixel strides) when only convolutions read it, because the conv
  kernels take strided input. A PAD that only feeds VALID convolutions is folded into their padding (a
  skipped tap equals a tap on the zero point). A CONCATENATION's producers write straight into their slot.
- **Overlap with the input being consumed.** The kernels write in raster order, so an output may start a
  few bytes before an input that dies at that op: for each output pixel, everything written so far must lie
  below the lowest input byte any later pixel still reads. ``_gap`` computes that distance exactly per op
  (0 for element-wise ops, i.e. in place); the placer treats it as the only overlap allowed.
- **Best of several first-fit orders** over buffer lifetimes (biggest first, by start, by area).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ExportError
from .graph import Graph, Op

ALIGN = 4  # bytes: lets a word-wise kernel load four int8 at once
MAX_PIXEL = 256  # DSSDN_MAX_PIXEL in dssdn_kernels.h
STRIDED_READERS = ("CONV_2D", "DEPTHWISE_CONV_2D")
COPY_OPS = ("SLICE", "PAD", "CONCATENATION", "RESHAPE")


def shape4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(shape) > 4:
        raise ExportError(f"a {len(shape)}-D tensor; the MCU code generator handles up to 4-D")
    s = (1,) * (4 - len(shape)) + tuple(int(v) for v in shape)
    return s  # type: ignore[return-value]


def natural_strides(s4: tuple[int, ...]) -> tuple[int, int, int, int]:
    return (s4[1] * s4[2] * s4[3], s4[2] * s4[3], s4[3], 1)


def is_contiguous(s4: tuple[int, ...], strides: tuple[int, ...]) -> bool:
    nat = natural_strides(s4)
    return all(d == 1 or st == n for d, st, n in zip(s4, strides, nat, strict=True))


@dataclass
class Place:
    """Where a tensor's bytes are: a buffer, a byte offset in it, and byte strides of its 4-D shape."""

    buffer: int
    offset: int
    strides: tuple[int, int, int, int]
    shape: tuple[int, int, int, int]

    @property
    def contiguous(self) -> bool:
        return is_contiguous(self.shape, self.strides)


@dataclass
class Buffer:
    index: int
    size: int
    first: int = 1 << 30
    last: int = -(1 << 30)
    offset: int = 0  # in the arena, once placed


@dataclass
class Plan:
    arena_bytes: int
    places: dict[int, Place]
    buffers: list[Buffer]
    action: dict[int, str]  # op index → "kernel", "view", "fold" or "concat"
    pad_fold: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # pad out → (src, top, left)
    concat_copy: dict[int, list[int]] = field(default_factory=dict)  # concat op → input positions copied
    overlaps: dict[int, int] = field(default_factory=dict)  # op index → bytes its output shares with input
    buffered: set[int] = field(default_factory=set)  # convs that store a pixel after computing it
    peak_live_bytes: int = 0  # the lower bound of a whole-tensor plan (sum of live buffers at the worst op)

    def addr(self, tensor: int) -> int:
        p = self.places[tensor]
        return self.buffers[p.buffer].offset + p.offset

    def to_dict(self, graph: Graph) -> dict[str, Any]:
        ops = []
        for op in graph.ops:
            row: dict[str, Any] = {"op": op.index, "kind": op.kind, "action": self.action[op.index]}
            outs = [t for t in op.outputs if t in self.places]
            if outs:
                row["out_offset"] = self.addr(outs[0])
                row["out_bytes"] = graph.t(outs[0]).size
            if op.index in self.overlaps:
                row["shares_input_bytes"] = self.overlaps[op.index]
            ops.append(row)
        return {"arena_bytes": self.arena_bytes, "whole_tensor_lower_bound_bytes": self.peak_live_bytes,
                "align": ALIGN, "ops": ops}


def _consumers(graph: Graph) -> dict[int, list[tuple[int, int]]]:
    out: dict[int, list[tuple[int, int]]] = {}
    for op in graph.ops:
        for j, t in enumerate(op.inputs):
            if t >= 0:
                out.setdefault(t, []).append((op.index, j))
    return out


def _const_vector(graph: Graph, op: Op, j: int) -> list[int]:
    t = graph.t(op.inputs[j])
    if t.data is None:
        raise ExportError(f"{graph.label}: op {op.kind} (op #{op.index}) needs a constant input {j}")
    return [int(v) for v in np.asarray(t.data).reshape(-1)]


def slice_bounds(graph: Graph, op: Op) -> tuple[list[int], list[int]]:
    """(begin, size) of a SLICE in 4-D, sizes of -1 resolved."""
    src = shape4(graph.t(op.inputs[0]).shape)
    begin = _const_vector(graph, op, 1)
    size = _const_vector(graph, op, 2)
    pad = 4 - len(begin)
    begin = [0] * pad + begin
    size = [1] * pad + size
    size = [src[i] - begin[i] if size[i] == -1 else size[i] for i in range(4)]
    return begin, size


def pad_amounts(graph: Graph, op: Op) -> list[tuple[int, int]]:
    vals = _const_vector(graph, op, 1)
    pairs = [(vals[2 * i], vals[2 * i + 1]) for i in range(len(vals) // 2)]
    return [(0, 0)] * (4 - len(pairs)) + pairs


def _same_quant(graph: Graph, a: int, b: int) -> bool:
    ta, tb = graph.t(a), graph.t(b)
    return ta.scales == tb.scales and ta.zero_point == tb.zero_point


class _Planner:
    def __init__(self, graph: Graph) -> None:
        self.g = graph
        self.cons = _consumers(graph)
        self.places: dict[int, Place] = {}
        self.buffers: list[Buffer] = []
        self.action: dict[int, str] = {}
        self.pad_fold: dict[int, tuple[int, int, int]] = {}
        self.concat_copy: dict[int, list[int]] = {}
        self.producer: dict[int, int] = {}
        self.buffered: set[int] = set()

    def own(self, t: int) -> None:
        s4 = shape4(self.g.t(t).shape)
        self.buffers.append(Buffer(len(self.buffers), self.g.t(t).size))
        self.places[t] = Place(len(self.buffers) - 1, 0, natural_strides(s4), s4)

    def only_strided_readers(self, t: int) -> bool:
        readers = self.cons.get(t, [])
        return bool(readers) and t not in self.g.outputs and all(
            self.g.ops[k].kind in STRIDED_READERS and j == 0 for k, j in readers)

    def assign(self) -> None:
        g = self.g
        for t in g.inputs:
            self.own(t)
        for op in g.ops:
            out = op.outputs[0]
            src = op.inputs[0] if op.inputs else -1
            self.producer[out] = op.index
            self.action[op.index] = "kernel"
            if op.kind == "RESHAPE" and self.places[src].contiguous:
                p = self.places[src]
                s4 = shape4(g.t(out).shape)
                self.places[out] = Place(p.buffer, p.offset, natural_strides(s4), s4)
                self.action[op.index] = "view"
                continue
            if op.kind == "SLICE" and _same_quant(g, src, out):
                begin, _ = slice_bounds(g, op)
                p = self.places[src]
                s4 = shape4(g.t(out).shape)
                start = p.offset + sum(b * s for b, s in zip(begin, p.strides, strict=True))
                view = Place(p.buffer, start, p.strides, s4)
                if (view.contiguous and out not in g.outputs) or (
                        view.strides[3] == 1 and self.only_strided_readers(out)):
                    self.places[out] = view
                    self.action[op.index] = "view"
                    continue
            if op.kind == "PAD" and self._foldable_pad(op):
                pads = pad_amounts(g, op)
                self.pad_fold[out] = (src, pads[1][0], pads[2][0])
                self.places[out] = self.places[src]  # read through the source; never written
                self.action[op.index] = "fold"
                continue
            self.own(out)
            if op.kind == "CONCATENATION":
                self._concat_in_place(op)

    def _foldable_pad(self, op: Op) -> bool:
        g, out = self.g, op.outputs[0]
        pads = pad_amounts(g, op)
        if pads[0] != (0, 0) or pads[3] != (0, 0) or not _same_quant(g, op.inputs[0], out):
            return False
        if len(op.inputs) > 2 or not self.only_strided_readers(out):
            return False
        return all(g.ops[k].options.get("padding") == 1 for k, _ in self.cons[out])  # VALID only

    def _concat_in_place(self, op: Op) -> None:
        g, out = self.g, op.outputs[0]
        axis = int(op.options.get("axis", 0))
        ndim = len(g.t(out).shape)
        axis = axis + ndim if axis < 0 else axis
        axis4 = axis + 4 - ndim
        o4 = shape4(g.t(out).shape)
        outer = int(np.prod(o4[:axis4]))
        target = self.places[out]
        offset, copies = 0, []
        seen: set[int] = set()
        for j, t in enumerate(op.inputs):
            p = self.places[t]
            alone = sum(1 for q in self.places.values() if q.buffer == p.buffer) == 1
            movable = (outer == 1 and t not in seen and t in self.producer and alone and p.contiguous
                       and self.action[self.producer[t]] == "kernel" and _same_quant(g, t, out)
                       and t not in g.outputs)
            seen.add(t)
            if movable:
                self.places[t] = Place(target.buffer, offset * target.strides[axis4], p.strides, p.shape)
            else:
                copies.append(j)
            offset += shape4(g.t(t).shape)[axis4]
        self.concat_copy[op.index] = copies
        self.action[op.index] = "concat"

    # -- lifetimes ------------------------------------------------------------------------------------
    def lifetimes(self) -> dict[int, tuple[int, int]]:
        """Per tensor [written, last read], counting only ops that touch bytes (not views or folds)."""
        g = self.g
        life: dict[int, tuple[int, int]] = {}
        for t in self.places:
            first = self.producer.get(t, -1)
            reads = [k for k, _ in self.cons.get(t, []) if self.action[k] in ("kernel", "concat")]
            last = max(reads, default=first)
            if t in g.outputs:
                last = len(g.ops)
            life[t] = (first, last)
        # a folded PAD is read through its source: the source lives as long as the pad's readers
        for out, (src, _, _) in self.pad_fold.items():
            f, la = life[src]
            life[src] = (f, max(la, life[out][1]))
        return life

    def buffer_lifetimes(self, life: dict[int, tuple[int, int]]) -> None:
        for t, p in self.places.items():
            if t in self.pad_fold:
                continue
            b = self.buffers[p.buffer]
            b.first = min(b.first, life[t][0])
            b.last = max(b.last, life[t][1])

    # -- overlap allowances ---------------------------------------------------------------------------
    def gaps(self, life: dict[int, tuple[int, int]]) -> tuple[dict[tuple[int, int], int], dict[int, tuple]]:
        """{(out buffer, in buffer): min bytes from the output's start to the input's start} for the pairs
        that may overlap, with the op each comes from."""
        g = self.g
        gaps: dict[tuple[int, int], int] = {}
        where: dict[int, tuple] = {}
        for op in g.ops:
            if self.action[op.index] != "kernel" or op.kind in COPY_OPS:
                continue
            out = op.outputs[0]
            po = self.places[out]
            bo = self.buffers[po.buffer]
            if bo.first != op.index or not po.contiguous:
                continue
            for j, t in enumerate(op.inputs):
                if t < 0 or g.t(t).is_const or t not in self.places:
                    continue
                src, pad_t, pad_l = self.pad_fold.get(t, (t, 0, 0))
                pi = self.places[src]
                bi = self.buffers[pi.buffer]
                if bi.index == bo.index or bi.last != op.index:
                    continue
                others = [u for u, q in self.places.items()
                          if q.buffer == bi.index and u not in (t, src) and u not in self.pad_fold
                          and life[u][1] >= op.index]
                if others:
                    continue
                gap = _gap(g, op, j, pi, po, pad_t, pad_l)
                if gap is None:
                    continue
                if op.kind in STRIDED_READERS and shape4(g.t(out).shape)[3] <= MAX_PIXEL:
                    gap_b = _gap(g, op, j, pi, po, pad_t, pad_l, buffered=True)
                    if gap_b is not None and gap_b < gap:
                        gap = gap_b
                        self.buffered.add(op.index)
                key = (bo.index, bi.index)
                gaps[key] = max(gaps.get(key, gap), gap)
                where[bo.index] = (op.index, bi.index)
        return gaps, where


def _gap(graph: Graph, op: Op, j: int, pin: Place, pout: Place, pad_t: int, pad_l: int, buffered: bool = False
         ) -> int | None:
    """Smallest (input buffer start − output buffer start) for which writing ``op``'s output in raster
    order never overwrites an input byte still to be read; None when the op cannot share at all.
    ``buffered``: the kernel stores each output pixel only after computing all its channels."""
    out_t = graph.t(op.outputs[0])
    o4 = shape4(out_t.shape)
    if op.kind in ("ADD", "MUL", "LOGISTIC"):
        in_t = graph.t(op.inputs[j])
        if shape4(in_t.shape) != o4 or not pin.contiguous:
            return None
        return pout.offset - pin.offset  # element e is read before e is written; later reads are above e
    if op.kind not in ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D") or j != 0:
        return None
    from .ops import window_geometry  # the same geometry the emitter uses

    geo = window_geometry(graph, op, pad_t, pad_l, pin.shape)
    oy = np.arange(geo["out_h"])[:, None]
    ox = np.arange(geo["out_w"])[None, :]
    iy0 = oy * geo["stride_h"] - geo["pad_t"]
    ix0 = ox * geo["stride_w"] - geo["pad_l"]
    # the first in-bounds tap of each window (lowest row, lowest column)
    ky = np.maximum(0, -np.floor_divide(iy0, geo["dil_h"]))
    kx = np.maximum(0, -np.floor_divide(ix0, geo["dil_w"]))
    iy = iy0 + ky * geo["dil_h"]
    ix = ix0 + kx * geo["dil_w"]
    ok = (ky < geo["k_h"]) & (iy < geo["in_h"]) & (kx < geo["k_w"]) & (ix < geo["in_w"])
    first_byte = pin.offset + iy * pin.strides[1] + ix * pin.strides[2]
    first_byte = np.where(ok, np.broadcast_to(first_byte, ok.shape), np.iinfo(np.int64).max).reshape(-1)
    big = np.iinfo(np.int64).max
    rmin = np.minimum.accumulate(first_byte[::-1])[::-1]  # lowest byte read by pixel p or any later one
    if buffered:  # pixel p is stored after all its reads: only later pixels' reads matter
        rmin = np.append(rmin[1:], big)
    p = np.arange(len(rmin), dtype=np.int64)
    written = pout.offset + (p + 1) * o4[3]
    live = rmin < big
    if not live.any():
        return -(1 << 40)
    return int((written[live] - rmin[live]).max())


def _place(buffers: list[Buffer], order: list[int], gaps: dict[tuple[int, int], int], mode: int = 0
           ) -> tuple[int, dict[int, int]]:
    """Place buffers in ``order``: mode 0 at the lowest free offset (first fit); modes 1 and 2 at the free
    candidate offset that raises the arena top least, the lowest (1) or the highest (2) of those. Candidates
    include sliding just below a dying input (or just above the output overwriting it) by the allowed gap;
    the highest choice leaves room below for a chain of such slides."""
    placed: list[int] = []
    offs: dict[int, int] = {}
    top = 0
    for i in order:
        x = buffers[i]
        forbidden = []
        candidates = {0}
        for k in placed:
            y = buffers[k]
            if y.first > x.last or x.first > y.last:
                continue
            oy = offs[k]
            if (i, k) in gaps:  # x is the output overlapping its dying input y
                lo, hi = oy - min(x.size, gaps[(i, k)]) + 1, oy + y.size - 1
                candidates.add((oy - gaps[(i, k)]) // ALIGN * ALIGN)
            elif (k, i) in gaps:  # y is the output, x its input
                lo, hi = oy - x.size + 1, oy + min(y.size, gaps[(k, i)]) - 1
                candidates.add(-(-(oy + gaps[(k, i)]) // ALIGN) * ALIGN)
            else:
                lo, hi = oy - x.size + 1, oy + y.size - 1
            if lo <= hi:
                forbidden.append((lo, hi))
                candidates.add(-(-(hi + 1) // ALIGN) * ALIGN)
        free = sorted(c for c in candidates if c >= 0 and not any(lo <= c <= hi for lo, hi in forbidden))
        if mode == 0:
            pos = free[0]
        else:
            pos = min(free, key=lambda c: (max(top, c + x.size), c if mode == 1 else -c))
        offs[i] = pos
        top = max(top, pos + x.size)
        placed.append(i)
    return top, offs


def _search(buffers: list[Buffer], ids: list[int], gaps: dict[tuple[int, int], int], tries: int = 300
            ) -> tuple[int, dict[int, int]]:
    """The best of a few orderings under both placers, then a seeded hill-climb over swaps of the best
    order (deterministic, so an export is reproducible)."""
    B = buffers
    orders = [
        sorted(ids, key=lambda i: (-B[i].size, B[i].first, i)),  # biggest first (TFLM's greedy)
        sorted(ids, key=lambda i: (B[i].first, -B[i].size, i)),  # execution order
        sorted(ids, key=lambda i: (-(B[i].last - B[i].first + 1) * B[i].size, i)),  # long and big
        sorted(ids, key=lambda i: (-B[i].size, -(B[i].last - B[i].first), i)),
        sorted(ids, key=lambda i: (-B[i].last, -B[i].size, i)),  # reverse execution order
    ]
    modes = (0, 1, 2)
    scored = [(_place(B, o, gaps, fit)[0], n, o, fit) for n, o in enumerate(orders) for fit in modes]
    best, _, order, fit = min(scored)
    rng = np.random.default_rng(0)
    for _ in range(tries if len(ids) > 1 else 0):
        cand = list(order)
        a, b = (int(v) for v in rng.integers(0, len(cand), 2))
        cand[a], cand[b] = cand[b], cand[a]
        for f in modes:
            v = _place(B, cand, gaps, f)[0]
            if v < best or (v == best and f == fit):
                best, order, fit = v, cand, f
    return _place(B, order, gaps, fit)


def _conflicts(buffers: list[Buffer], ids: list[int]) -> list[tuple[int, int]]:
    return [(i, j) for a, i in enumerate(ids) for j in ids[a + 1:]
            if not (buffers[i].first > buffers[j].last or buffers[j].first > buffers[i].last)]


def _extent(buffers: list[Buffer], gaps: dict[tuple[int, int], int], i: int, j: int) -> int:
    """How far above ``i``'s start ``j`` must start when ``j`` is placed above ``i``."""
    return min(buffers[i].size, gaps[(i, j)]) if (i, j) in gaps else buffers[i].size


def _valid(buffers: list[Buffer], ids: list[int], gaps: dict[tuple[int, int], int], offs: dict[int, int]) -> bool:
    for i, j in _conflicts(buffers, ids):
        if not (offs[i] + _extent(buffers, gaps, i, j) <= offs[j] or offs[j] + _extent(buffers, gaps, j, i) <= offs[i]):
            return False
    return all(offs[i] >= 0 and offs[i] % ALIGN == 0 for i in ids)


def _optimal(buffers: list[Buffer], ids: list[int], gaps: dict[tuple[int, int], int], upper: int
             ) -> tuple[int, dict[int, int]] | None:
    """The placement of least arena as a small MILP (HiGHS through scipy): an aligned offset per buffer and,
    for every two buffers alive together, a binary for which one lies above. A node limit instead of a time
    limit keeps the answer the same on every machine. None when it finds nothing better than ``upper``."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    pairs = _conflicts(buffers, ids)
    if not pairs:
        return None
    idx = {i: k for k, i in enumerate(ids)}
    nv = len(ids) + len(pairs) + 1
    big = upper + ALIGN
    rows, lo, hi = [], [], []
    for p, (i, j) in enumerate(pairs):
        z = len(ids) + p
        r = np.zeros(nv)
        r[idx[i]], r[idx[j]], r[z] = ALIGN, -ALIGN, -big  # z = 0: j above i
        rows.append(r)
        hi.append(-_extent(buffers, gaps, i, j))
        r = np.zeros(nv)
        r[idx[j]], r[idx[i]], r[z] = ALIGN, -ALIGN, big  # z = 1: i above j
        rows.append(r)
        hi.append(big - _extent(buffers, gaps, j, i))
        lo += [-np.inf, -np.inf]
    for i in ids:
        r = np.zeros(nv)
        r[idx[i]], r[-1] = ALIGN, -1
        rows.append(r)
        lo.append(-np.inf)
        hi.append(-buffers[i].size)
    cost = np.zeros(nv)
    cost[-1] = 1
    integrality = np.ones(nv)
    integrality[-1] = 0
    upper_k = [(upper - buffers[i].size) // ALIGN for i in ids]
    if min(upper_k) < 0:
        return None
    bounds = Bounds(np.zeros(nv), np.concatenate([upper_k, np.ones(len(pairs)), [upper]]))
    res = milp(cost, constraints=LinearConstraint(np.array(rows), lo, hi), integrality=integrality,
               bounds=bounds, options={"node_limit": 20000, "disp": False})
    if res.x is None:
        return None
    offs = {i: int(round(res.x[idx[i]])) * ALIGN for i in ids}
    if not _valid(buffers, ids, gaps, offs):
        return None
    total = max(offs[i] + buffers[i].size for i in ids)
    return (total, offs) if total < upper else None


def plan_memory(graph: Graph) -> Plan:
    pl = _Planner(graph)
    pl.assign()
    life = pl.lifetimes()
    pl.buffer_lifetimes(life)
    gaps, _ = pl.gaps(life)
    bufs = [b for b in pl.buffers if b.size > 0]
    B = pl.buffers
    ids = [b.index for b in bufs]
    total, offs = _search(B, ids, gaps, tries=60)
    better = _optimal(B, ids, gaps, total)
    if better is not None:
        total, offs = better
    for i, off in offs.items():
        B[i].offset = off
    overlaps = {}
    for (bo, bi), _gapv in gaps.items():
        lo_o, hi_o = B[bo].offset, B[bo].offset + B[bo].size
        lo_i, hi_i = B[bi].offset, B[bi].offset + B[bi].size
        shared = min(hi_o, hi_i) - max(lo_o, lo_i)
        if shared > 0:
            overlaps[B[bo].first] = overlaps.get(B[bo].first, 0) + shared
    peak = 0
    for k in range(-1, len(graph.ops) + 1):
        peak = max(peak, sum(b.size for b in bufs if b.first <= k <= b.last))
    return Plan((total + ALIGN - 1) // ALIGN * ALIGN, pl.places, B, pl.action, pl.pad_fold, pl.concat_copy,
                overlaps, pl.buffered, peak)


def work_area(plan: Plan, op_index: int, nbytes: int) -> int:
    """Arena offset of ``nbytes`` of scratch that op ``op_index`` may use while it runs (a conv unpacks its
    channel constants there): the lowest aligned gap between the buffers live at that op, else the arena's end
    (which then grows). Only that op uses it, so the areas of different ops never conflict."""
    live = sorted((b.offset, b.offset + b.size) for b in plan.buffers
                  if b.size > 0 and b.first <= op_index <= b.last)
    start = 0
    for lo, hi in live:
        if lo - start >= nbytes:
            return start
        start = max(start, (hi + ALIGN - 1) // ALIGN * ALIGN)
    if start + nbytes > plan.arena_bytes:
        plan.arena_bytes = (start + nbytes + ALIGN - 1) // ALIGN * ALIGN
    return start
