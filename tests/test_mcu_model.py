"""Whole-model bit-exactness: every fold-5 window of each shipped size, the same int8 input through the
generated C (host build) and through TFLite Micro: the int8 logits must be identical."""

from __future__ import annotations

import time

import numpy as np
import pytest

from dssdn_edge.export import sources
from dssdn_edge.export.pipeline import resolve_checkpoint
from dssdn_edge.export.tflm import open_tflm
from dssdn_edge.mcu import generate_model_c
from dssdn_edge.mcu.generate import KERNEL_SOURCES
from dssdn_edge.mcu.host import HostModel


def int8_windows(model: bytes, size: str) -> np.ndarray:
    """Fold-5 windows (the export's own cutting and normalisation), quantised like the model's input."""
    ckpt = resolve_checkpoint(size)
    ev = sources.source_windows(ckpt, "evaluation")
    if ev is None:
        pytest.skip("ESC-50 fold 5 is not available")
    return open_tflm(model, size).prepare(ev.windows)  # NHWC, quantised with the model's input parameters


@pytest.mark.parametrize("size", ["small", "middle", "large"])
def test_every_fold5_window_matches_tflm(size, shared_int8_tflite, data_root, tmp_path):
    model = shared_int8_tflite(size)
    report = generate_model_c(model, tmp_path / "c", f"dssdn-{size}")
    host = HostModel(tmp_path / "c", tmp_path / "build")
    x = int8_windows(model, size)
    assert len(x) > 1500 and len(np.unique(x)) > 100  # all of fold 5, real (not constant) inputs

    t0 = time.perf_counter()
    mine = host(x)
    t1 = time.perf_counter()
    tflm = open_tflm(model, f"dssdn-{size}")
    theirs = np.stack([tflm.invoke(w[None]).reshape(-1) for w in x])
    t2 = time.perf_counter()
    print(f"\n{size}: {len(x)} windows, generated C {t1 - t0:.2f} s, TFLM {t2 - t1:.2f} s, "
          f"arena {report.arena_bytes} B, constants {report.const_bytes} B")

    assert mine.shape == theirs.shape == (len(x), 50)
    bad = np.flatnonzero((mine != theirs).any(axis=1))
    assert bad.size == 0, f"{bad.size} of {len(x)} windows differ (first: #{bad[0]})"
    assert len(np.unique(mine.argmax(1))) > 10  # the logits are a working classifier, not a constant
    assert report.arena_bytes < report.plan["whole_tensor_lower_bound_bytes"]  # views and overlaps were used


def test_resnet_fold5_windows_match_tflm(data_root, tmp_path):
    """The ResNet baseline's graph (its own op mix and a bigger arena) through the generated C: a spread of
    real fold-5 windows, identical int8 logits to TFLM. A spread, not all: TFLM's Python-driven reference
    kernels take ~0.13 s per ResNet window, and the kernels are covered window by window by the DSSDN sizes."""
    from dssdn_edge.export.pipeline import int8_tflite

    model = int8_tflite("resnet")
    generate_model_c(model, tmp_path / "c", "resnet")
    host = HostModel(tmp_path / "c", tmp_path / "build")
    x = int8_windows(model, "resnet")
    x = x[np.linspace(0, len(x) - 1, 48).astype(int)]
    mine = host(x)
    tflm = open_tflm(model, "resnet")
    theirs = np.stack([tflm.invoke(w[None]).reshape(-1) for w in x])
    assert mine.shape == theirs.shape == (len(x), 50)
    bad = np.flatnonzero((mine != theirs).any(axis=1))
    assert bad.size == 0, f"{bad.size} of {len(x)} windows differ (first: #{bad[0]})"
    assert len(np.unique(mine.argmax(1))) > 10


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m7"])
def test_dsp_kernels_on_emulated_cortex_m(target, shared_int8_tflite, data_root, tmp_path):
    """The Arm DSP path (SMLAD on sign-extended byte pairs) on qemu's Cortex-M boards gives TFLM's bits."""
    import shutil
    import subprocess

    from dssdn_edge.device.cortex_m import MCU_SRC, TARGETS

    if shutil.which("arm-none-eabi-gcc") is None or shutil.which("qemu-system-arm") is None:
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed")
    model = shared_int8_tflite("small")
    generate_model_c(model, tmp_path, "dssdn-small")
    x = int8_windows(model, "small")[::700][:4]
    rows = ",\n".join("{" + ",".join(map(str, w.reshape(-1))) + "}" for w in x)
    (tmp_path / "inputs.h").write_text(
        f"#define N_IN {len(x)}\nstatic const int8_t g_inputs[N_IN][DSSDN_MODEL_IN_BYTES] = {{\n{rows}\n}};\n")
    (tmp_path / "main.c").write_text(
        '#include <stdint.h>\n#include "dssdn_model.h"\n#include "inputs.h"\n#include "semihost.h"\n'
        "int main(void)\n{\n    int fd = sh_open(\"out.bin\", 6);\n    if (fd < 0) {\n        return 1;\n    }\n"
        "    for (int i = 0; i < N_IN; ++i) {\n        int8_t *in = dssdn_model_input();\n"
        "        for (int j = 0; j < DSSDN_MODEL_IN_BYTES; ++j) {\n            in[j] = g_inputs[i][j];\n        }\n"
        "        if (sh_write(fd, dssdn_model_invoke(), DSSDN_MODEL_OUT_CLASSES) != 0) {\n            return 1;\n"
        "        }\n    }\n    sh_close(fd);\n    return 0;\n}\n")
    t = TARGETS[target]
    srcs = [tmp_path / n for n in ("main.c", "dssdn_model.c", *KERNEL_SOURCES)]
    srcs += [MCU_SRC / "startup.c", MCU_SRC / "semihost.c"]
    elf = tmp_path / "fw.elf"
    subprocess.run(["arm-none-eabi-gcc", *t.cflags, "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
                    f"-I{tmp_path}", f"-I{MCU_SRC}", "-nostartfiles", "--specs=nano.specs", "--specs=nosys.specs",
                    f"-T{MCU_SRC / 'mps2.ld'}", *map(str, srcs), "-o", str(elf)], check=True)
    disasm = subprocess.run(["arm-none-eabi-objdump", "-d", str(elf)], capture_output=True, text=True).stdout
    assert "smlad" in disasm  # the DSP path is what runs
    subprocess.run(["qemu-system-arm", "-M", t.qemu_machine, "-display", "none", "-monitor", "none", "-serial",
                    "none", "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)],
                   cwd=tmp_path, check=True, timeout=600)
    mine = np.fromfile(tmp_path / "out.bin", np.int8).reshape(len(x), -1)
    tflm = open_tflm(model, "dssdn-small")
    assert np.array_equal(mine, np.stack([tflm.invoke(w[None]).reshape(-1) for w in x]))
