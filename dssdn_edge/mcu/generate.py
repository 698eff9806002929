"""``generate_model_c``: an int8 ``.tflite`` in, a folder with the model's C and the kernel library out."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import ExportError
from .codegen import emit, op_summary
from .graph import read_graph
from .plan import plan_memory

# The kernels copied beside every generated model; a build compiles every .c among them (KERNEL_SOURCES).
KERNEL_FILES = ("dssdn_kernels.h", "dssdn_arith.h", "dssdn_requant.h", "dssdn_kernels.c", "dssdn_requant.c",
                "dssdn_conv.c", "dssdn_depthwise.c")
KERNEL_SOURCES = tuple(n for n in KERNEL_FILES if n.endswith(".c"))


@dataclass
class McuModelReport:
    """What the generator made: the arena the plan needs, the bytes of constants, the ops and the plan."""

    arena_bytes: int
    const_bytes: int
    weights: int
    ops: dict[str, int]
    files: list[str]
    plan: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"arena_bytes": self.arena_bytes, "const_bytes": self.const_bytes, "weights": self.weights,
                "ops": self.ops, "files": self.files, "plan": self.plan}


def kernel_sources() -> dict[str, str]:
    base = resources.files("dssdn_edge.mcu") / "csrc"
    return {n: (base / n).read_text("utf-8") for n in KERNEL_FILES}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text, "utf-8")
    tmp.replace(path)


def generate_model_c(tflite_bytes: bytes, out_dir: Path, name: str, labels: list[str] | None = None,
                     symbol: str = "dssdn_model", kernels: bool = True, label: str | None = None
                     ) -> McuModelReport:
    """Write ``<symbol>.c``/``.h`` (and, with ``kernels``, the kernel library) into ``out_dir``."""
    graph = read_graph(tflite_bytes, label or name)
    classes = graph.t(graph.outputs[0]).size
    if labels is not None and len(labels) != classes:
        raise ExportError(f"{label or name}: {len(labels)} labels for {classes} outputs")
    plan = plan_memory(graph)
    emitted = emit(graph, plan, name, labels, symbol)
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        files = {f"{symbol}.h": emitted.header, f"{symbol}.c": emitted.source}
        if kernels:
            files.update(kernel_sources())
        for fname, text in files.items():
            _write(out_dir / fname, text)
    except OSError as exc:
        raise ExportError(f"{out_dir}: cannot write the generated C ({exc.strerror})") from None
    return McuModelReport(plan.arena_bytes, emitted.const_bytes, emitted.weight_count, op_summary(graph),
                          sorted(files), plan.to_dict(graph))
