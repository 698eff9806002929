"""The structure the layer contracts cannot see: one runtime layer, and one test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "dssdn_edge" / "runtime"
# what constructs a model runtime: a LiteRT / tflite-runtime / TFLM interpreter or an onnxruntime session
CONSTRUCTS = re.compile(r"\bInterpreter\s*(\(|\.from_bytes\b)|\bInferenceSession\s*\(")


def _sources() -> list[Path]:
    return sorted(p for folder in ("dssdn_edge", "benchmarks", "tools") for p in (ROOT / folder).rglob("*.py"))


def test_only_the_runtime_layer_constructs_interpreters_and_sessions() -> None:
    found = {p.relative_to(ROOT).as_posix() for p in _sources() if CONSTRUCTS.search(p.read_text(encoding="utf-8"))}
    assert found == {"dssdn_edge/runtime/core.py"}, f"runtimes built outside dssdn_edge/runtime/core.py: {found}"


def test_the_pattern_sees_every_way_of_constructing_one() -> None:
    """The check above would pass on an empty match; these are the spellings it must catch."""
    for line in ("it = Interpreter(model_content=data)", "tflm.Interpreter.from_bytes(model)",
                 "runtime.Interpreter.from_bytes(m, arena_size=1)", "ort.InferenceSession(path, so)"):
        assert CONSTRUCTS.search(line), line
    assert not CONSTRUCTS.search("self.interpreter.invoke()")


def test_readme_test_command_is_the_ci_command() -> None:
    ci = [ln for ln in (ROOT / ".ci" / "run").read_text().splitlines() if "pytest" in ln and not ln.startswith("#")]
    assert len(ci) == 1
    assert ci[0] in (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert "lint-imports" in ci[0]  # the layer contracts run before the tests
