"""The front end's C twin, and the whole mcu/ project (front end + generated model + classifier glue), built
for Cortex-M4/M7 with arm-none-eabi-gcc and run on qemu-system-arm.

Real parts: Debian's gcc-arm-none-eabi and newlib, qemu's mps2-an386 (Cortex-M4) and mps2-an500 (Cortex-M7)
boards, real ESC-50 clips baked into the firmware. The emulated core's features are held to the float32
bound tests/test_frontend_c.py holds the host build to; the whole firmware's labels to `dssdn-edge predict`
and its logits to the TFLite Micro interpreter. One export (``shared_small_export``) serves every test; the
40-clip runs on both cores share one build per core. No timing: qemu is not cycle-accurate (instruction
counts are emulated instructions, measured by benchmarks/mcu.py, not asserted here beyond sanity).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke
from device_helpers import loudest_seconds

from dssdn_edge.bench import mcu
from dssdn_edge.device import cortex_m
from dssdn_edge.frontend import Frontend, FrontendConfig
from dssdn_edge.frontend_c import emit_c, render_tables_header

TOL = 1e-4  # log10 units, within 60 dB of each frame's loudest band (as tests/test_frontend_c.py)
WITHIN = 6.0

pytestmark = [
    pytest.mark.skipif(shutil.which("arm-none-eabi-gcc") is None,
                       reason="no arm-none-eabi-gcc (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)"),
    pytest.mark.skipif(shutil.which("qemu-system-arm") is None,
                       reason="no qemu-system-arm (apt-get install qemu-system-arm)"),
]


@pytest.fixture(scope="module")
def clips(real_clips: list[Path]) -> list[np.ndarray]:
    """The loudest second of 6 real clips of different classes."""
    return loudest_seconds(real_clips[::4][:6])


def _state_bytes(cfg: FrontendConfig) -> int:
    """sizeof(dssdn_frontend_t) for float: buf N_FFT floats, two ints, scratch N_FFT + N_BINS floats."""
    return 4 * cfg.n_fft + 8 + 4 * (cfg.n_fft + cfg.n_fft // 2 + 1)


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7"])
def test_cortex_m_build_measures_and_runs_on_qemu(core: str, clips: list, tmp_path: Path) -> None:
    cfg = FrontendConfig()
    build = cortex_m.build_frontend(cfg, core, tmp_path)
    tables = mcu.tables_bytes(render_tables_header(cfg))
    # flash: the tables are in it, and the code beside them is a few KB, not the old 4 KB guess plus tables
    assert tables < build.flash_bytes < tables + 16 * 1024
    assert build.object_data == 0 and build.object_bss == 0  # the C twin keeps no hidden state
    # static RAM: the state struct, one output frame and one hop of input, plus a little of libc's data
    minimum = _state_bytes(cfg) + 4 * cfg.n_mels + 4 * cfg.hop_length
    assert minimum <= build.static_ram_bytes <= minimum + 512
    assert build.stack.bytes is not None and 0 < build.stack.bytes < 2048
    assert build.stack.path[0] in cortex_m.ENTRY_POINTS
    assert not [f for f in build.stack.not_counted if f.startswith("dssdn")]  # only library calls lack a frame
    run = cortex_m.run_on_qemu(build, cfg, clips)
    fe = Frontend(cfg)
    errors = []
    for clip, got in zip(clips, run.frames, strict=True):
        ref = fe.logmel(clip)
        assert got.shape == ref.shape and np.isfinite(got).all()
        assert ref.max() - ref.min() > 3  # real content, not a silent second
        errors.append(cortex_m.max_error_within(ref, got, WITHIN))
    assert max(errors) <= TOL, errors
    # the painted stack saw at least the static bound of the front end's own functions, plus library calls
    assert build.stack.bytes <= run.stack_peak_bytes < 4096


def test_other_front_end_config_on_the_m4(clips: list, tmp_path: Path) -> None:
    """Generic over configurations: the tables decide every size, the firmware follows."""
    cfg = FrontendConfig(n_fft=512, hop_length=160, n_mels=64, split_band=32)
    emit_c(cfg, tmp_path / "shipped")
    build = cortex_m.build_frontend(None, "cortex-m4", tmp_path / "build", src_dir=tmp_path / "shipped")
    assert build.frontend == cfg.to_dict()  # read back from the tables header it was built from
    run = cortex_m.run_on_qemu(build, None, clips[:3])
    fe = Frontend(cfg)
    for clip, got in zip(clips[:3], run.frames, strict=True):
        assert got.shape == (1 + len(clip) // 160, 64)
        assert cortex_m.max_error_within(fe.logmel(clip), got, WITHIN) <= TOL


def test_stack_bound_follows_the_call_graph() -> None:
    ci = (
        'graph: { title: "x.c"\n'
        'node: { title: "dssdn_frontend_push" label: "dssdn_frontend_push\\nx.c:1:1\\n16 bytes (static)" }\n'
        'node: { title: "x.c:inner" label: "inner\\nx.c:2:1\\n100 bytes (static)" }\n'
        'node: { title: "dssdn_logmel_frame" label: "dssdn_logmel_frame\\nx.c:3:1\\n40 bytes (static)" }\n'
        'node: { title: "log10f" label: "log10f\\n<built-in>" shape : ellipse }\n'
        'edge: { sourcename: "dssdn_frontend_push" targetname: "x.c:inner" label: "x.c:1:2" }\n'
        'edge: { sourcename: "dssdn_frontend_push" targetname: "dssdn_logmel_frame" label: "x.c:1:3" }\n'
        'edge: { sourcename: "dssdn_logmel_frame" targetname: "log10f" label: "x.c:3:2" }\n}\n'
    )
    bound = cortex_m.stack_bound(ci, ("dssdn_frontend_push",))
    assert bound.bytes == 116 and bound.path == ["dssdn_frontend_push", "x.c:inner"]
    assert bound.not_counted == ["log10f"]
    recursive = ci.replace('targetname: "log10f"', 'targetname: "dssdn_frontend_push"')
    assert cortex_m.stack_bound(recursive, ("dssdn_frontend_push",)).bytes is None  # recursion: no bound


def test_bench_cortex_m_reports_the_measured_firmware(mcu_project: Path, tmp_path: Path) -> None:
    """With the generated model in mcu/ (export --int8), flash, RAM and instructions come from the linked
    firmware run on qemu; the TFLM code allowance is nowhere."""
    export = mcu_project.parent
    res = invoke("bench", "--export", export, "--device", "cortex-m4", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "bench.json").read_text())["mcu"]
    fp = result["footprint"]
    fw = fp["firmware"]
    assert fp["measured"] is True and fp["basis"].startswith("measured") and fp["code_bytes"] is None
    assert fp["flash_bytes"] == fw["footprint"]["flash_bytes"] == sum(fw["footprint"]["flash_by_part"].values())
    assert fp["ram_bytes"] == fw["footprint"]["ram_bytes"] == sum(fw["footprint"]["ram_by_part"].values())
    assert fp["model_ram_bytes"] == fw["footprint"]["arena_bytes"] < fp["arena_bytes"]  # below TFLM's arena
    assert fw["calibration"]["machine"] == "mps2-an386" and fw["instructions"]["per_1s_window"] > 1_000_000
    assert all(f["fits"] for f in result["fits"])
    md = (tmp_path / "bench.md").read_text()
    assert "measured: the whole firmware" in md and "emulated instructions" in md.lower()
    assert "ALLOWANCE" not in md and "allowance" not in json.dumps(fp["sources"]).lower()


def test_footprint_without_the_generated_model_is_an_estimate(mcu_project: Path, tmp_path: Path) -> None:
    """An export made before the generator: the numbers say ESTIMATE, the code is an allowance."""
    from dssdn_edge.bench.report import _mcu_lines

    export = tmp_path / "old"
    shutil.copytree(mcu_project.parent, export)
    for f in (export / "mcu").glob("dssdn_model.*"):
        f.unlink()
    manifest = json.loads((export / "manifest.json").read_text())
    fp = mcu.footprint(export, manifest, "cortex-m4")  # the firmware is not linkable: front end only
    assert not fp.measured and fp.basis == mcu.ESTIMATE and fp.firmware is None
    assert fp.code_bytes == mcu.CODE_RUNTIME_BYTES + mcu.CODE_PER_OP_BYTES * len(fp.ops)
    assert fp.flash_bytes == fp.model_bytes + fp.frontend_flash_bytes + fp.code_bytes
    assert fp.frontend_build is not None and fp.frontend_build["target"] == "cortex-m4"
    d = fp.to_dict()
    assert d["measured"] is False and d["basis"].startswith("ESTIMATE (no generated model")
    lines = "\n".join(_mcu_lines({"footprint": d, "fits": [mcu.fit(fp, b).to_dict() for b in mcu_boards()]}))
    assert "ESTIMATE (no generated model)" in lines and "allowance" in lines


def mcu_boards() -> list:
    from dssdn_edge.bench import devices

    return list(devices.BOARDS.values())


def test_device_cortex_m_cli_checks_real_clips(real_clips: list[Path], tmp_path: Path) -> None:
    res = invoke("device", "cortex-m", "cortex-m7", "--out", tmp_path, "--audio", real_clips[0], "--audio",
                 real_clips[5], "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and len(report["errors"]) == 2 and report["build"]["qemu"]["machine"] == "mps2-an500"
    assert all(e["within_60db"] <= TOL for e in report["errors"])


def test_device_cortex_m_cli_runs_the_whole_model(mcu_project: Path, data_root: Path, tmp_path: Path) -> None:
    """`device cortex-m CORE --export DIR`: front end + generated model + glue on qemu, real clips, the
    labels held against predict and the logits against TFLM."""
    clips = _fold5_clips(data_root, 40)[::20]
    args = ["device", "cortex-m", "cortex-m7", "--export", mcu_project.parent, "--out", tmp_path / "fw"]
    for c in clips:
        args += ["--audio", c]
    res = invoke(*args, "--json")
    assert res.exit_code == 0, res.output
    report = json.loads(res.stdout)
    assert report["ok"] and report["whole_model"] and report["check"]["n_clips"] == len(clips)
    assert report["check"]["logits_equal_tflm"] and report["measurement"]["target"] == "cortex-m7"
    assert report["measurement"]["footprint"]["flash_by_part"]["model"] > 0


def test_device_cortex_m_refuses_audio_the_firmware_cannot_take(mcu_project: Path, tmp_path: Path) -> None:
    import soundfile as sf

    wav = tmp_path / "cd.wav"
    sf.write(wav, np.zeros(44100, np.int16), 44100, subtype="PCM_16")
    res = invoke("device", "cortex-m", "cortex-m4", "--export", mcu_project.parent, "--audio", wav,
                 "--out", tmp_path / "fw")
    assert_one_line_error(res, str(wav), "16-bit PCM at 16000 Hz", "44100")
    assert not (tmp_path / "fw").exists()  # nothing built


def test_c_build_failure_is_the_compilers_first_error_line(tmp_path: Path) -> None:
    """An edited (broken) export mcu/ folder: one error line with the compiler's first error, exit 1."""
    emit_c(FrontendConfig(), tmp_path / "mcu")
    source = tmp_path / "mcu" / "dssdn_frontend.c"
    source.write_text(source.read_text().replace("void dssdn_frontend_init", "void dssdn_frontend_init oops", 1))
    res = invoke("device", "cortex-m", "cortex-m4", "--src", tmp_path / "mcu", "--out", tmp_path / "build")
    assert_one_line_error(res, "arm-none-eabi-gcc failed", "dssdn_frontend.c:", "error:")
    assert res.stdout == ""


# ----------------------------------------------------------------------------------- the whole model
def test_instruction_clock_is_proven_within_one_percent(tmp_path: Path) -> None:
    """qemu -icount shift=0 + the MPS2 counter count instructions: loops of known length agree within 1 %."""
    from dssdn_edge.device import firmware

    for core in ("cortex-m4", "cortex-m7"):
        cal = firmware.calibrate(core, tmp_path / core)
        assert len(cal.loops) == 3 and all(lp["ticks"] > 0 for lp in cal.loops)
        assert cal.max_relative_error <= 0.01, cal


def _fold5_clips(data_root: Path, n: int) -> list[Path]:
    """``n`` fold-5 clips spread over the classes (the export's own evaluation fold)."""
    import csv

    with (data_root / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"]
    rows.sort(key=lambda r: (int(r["take"] != "A"), int(r["target"]), r["filename"]))
    return [data_root / r["filename"] for r in rows[:n]]


@pytest.fixture(scope="module")
def mcu_project(shared_small_export: Path) -> Path:
    mcu_dir = shared_small_export / "mcu"
    assert (mcu_dir / "dssdn_model.h").is_file(), "export --int8 must write the generated model into mcu/"
    return mcu_dir


@pytest.fixture(scope="module")
def firmware_runs(mcu_project: Path, data_root: Path, tmp_path_factory) -> dict:
    """40 real fold-5 clips streamed through the whole model on both emulated cores (one build per core)."""
    from concurrent.futures import ThreadPoolExecutor

    from dssdn_edge.device import firmware, mcu_check

    paths = _fold5_clips(data_root, 40)
    clips = [mcu_check.read_int16(p) for p in paths]

    def on(core: str) -> tuple:
        builder = firmware.Builder(mcu_project, cortex_m.get_target(core), tmp_path_factory.mktemp(core))
        return firmware.measure_footprint(builder), firmware.run_clips(builder, clips)

    with ThreadPoolExecutor(2) as pool:  # two qemu processes: the suite's longest wait, halved on 2 cores
        runs = dict(zip(("cortex-m4", "cortex-m7"), pool.map(on, ("cortex-m4", "cortex-m7")), strict=True))
    return {"paths": paths, "runs": runs}


@pytest.mark.parametrize("core", ["cortex-m4", "cortex-m7"])
def test_firmware_labels_equal_predict_and_logits_equal_tflm(core: str, firmware_runs: dict,
                                                            shared_small_export: Path) -> None:
    from dssdn_edge.device import mcu_check

    _, run = firmware_runs["runs"][core]
    result = mcu_check.compare(shared_small_export, firmware_runs["paths"], run)
    assert result["n_clips"] == 40 and result["windows"] > 40
    assert all(c["same_windows"] for c in result["clips"])  # predict's window starts and silence rule
    assert result["logits_equal_tflm"], [c["path"] for c in result["clips"] if not c["logits_equal_tflm"]]
    assert result["windows_with_host_inputs"] >= 0.8 * result["windows"]  # float32 front end vs numpy
    assert not result["differing_not_near_tie"], result["differing_not_near_tie"]
    assert result["top1_agreement"] >= 0.9


def test_firmware_footprint_is_measured_and_split(firmware_runs: dict, mcu_project: Path) -> None:
    from dssdn_edge.device import firmware

    fp, run = firmware_runs["runs"]["cortex-m4"]
    hdr = firmware.model_header(mcu_project)
    assert fp.parts["model"]["bss"] >= hdr["arena_bytes"]  # the arena is the model's static RAM
    assert fp.parts["frontend"]["rodata"] > 4 * 128  # tables and the stored normalisation
    assert fp.parts["frontend"]["bss"] > 4 * 1024  # the front end's state inside the classifier
    assert sum(fp.image[k] for k in ("text", "data")) >= fp.flash() - fp.parts["glue"]["data"]
    assert 256 < run.stack_peak_bytes < 16 * 1024
    ins = run.instructions()
    assert ins["model_per_window"] > 1_000_000 and ins["frontend_and_glue_per_second"] > 100_000


def test_make_and_classify_print_predicts_clip_label(mcu_project: Path, data_root: Path, tmp_path: Path) -> None:
    """The acceptance path: `make -C mcu`, then build/classify on a WAV = `dssdn-edge predict` on it."""
    import subprocess

    import soundfile as sf

    from dssdn_edge.device import mcu_check

    project = tmp_path / "export"
    shutil.copytree(mcu_project.parent, project)
    proc = subprocess.run(["make", "-C", str(project / "mcu")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    wavs = []
    for p in _fold5_clips(data_root, 200)[::50]:
        wav = tmp_path / (p.stem + ".wav")
        sf.write(wav, mcu_check.read_int16(p), 16000, subtype="PCM_16")
        wavs.append(wav)
    model = project / "dssdn-small.int8.tflite"
    for wav in wavs:
        out = subprocess.run([str(project / "mcu" / "build" / "classify"), str(wav)], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[-1].startswith("clip ") and len(lines) >= 2
        res = invoke("predict", wav, "--model", model, "--json")
        assert res.exit_code == 0, res.output
        assert lines[-1] == "clip " + json.loads(res.stdout)[0]["top"][0]["label"]
    bad = tmp_path / "stereo.wav"
    sf.write(bad, np.zeros((16000, 2), np.int16), 16000, subtype="PCM_16")
    out = subprocess.run([str(project / "mcu" / "build" / "classify"), str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr.startswith(f"error: {bad}: not mono") and out.stdout == ""
