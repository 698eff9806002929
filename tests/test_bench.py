"""dssdn-edge bench: the runner's front end, local and remote (real sshd) runs, estimates, bad input.

Everything here is real: a small export converted with litert-torch / torch.onnx / ai-edge-quantizer and
described by a manifest written to the documented format, the real runtimes, the real TFLM interpreter,
and a real OpenSSH server on 127.0.0.1 with throw-away keys (the user's ~/.ssh is never read: the client
gets ``--ssh-config`` with its own known_hosts and identity). No timing is asserted.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sshd_server import SshdUnavailable, free_port, keygen, start_sshd

from dssdn_edge.bench import BenchOptions, run_bench, runner, stats
from dssdn_edge.bench import report as bench_report
from dssdn_edge.cli import main
from dssdn_edge.frontend import Frontend, FrontendConfig, Normalization
from dssdn_edge.runtime import logmel

SSHD = Path("/usr/sbin/sshd")
RUNTIMES = "litert,onnxruntime"


# ---------------------------------------------------------------------------------------- export
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _io(shape: list[int], dtype: str, q: tuple[float, int] | None = None) -> dict:
    return {"shape": shape, "dtype": dtype, "scale": q[0] if q else None, "zero_point": q[1] if q else None}


@pytest.fixture(scope="session")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dssdn-small (random weights) as ONNX fp32, TFLite fp32 and full-integer TFLite int8, with a
    manifest in the exporter's format (names, layouts, precisions, an mcu/ C array with its arena)."""
    import litert_torch
    import torch
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer, recipe

    from dssdn_edge import create_model
    from dssdn_edge.complexity import measure
    from dssdn_edge.frontend_c import emit_c
    from dssdn_edge.model import config_for

    out = tmp_path_factory.mktemp("export") / "dssdn-small"
    out.mkdir()
    torch.manual_seed(0)
    model = create_model("small").eval()
    fe = FrontendConfig()
    torch.onnx.export(
        model,
        (torch.randn(1, 2, 51, 128),),
        str(out / "dssdn-small.onnx"),
        dynamo=False,
        input_names=["features"],
        output_names=["logits"],
    )
    nhwc = litert_torch.to_channel_last_io(model, args=[0]).eval()
    litert_torch.convert(nhwc, (torch.randn(1, 51, 128, 2),)).export(str(out / "dssdn-small.tflite"))
    q = quantizer.Quantizer(str(out / "dssdn-small.tflite"))
    q.load_quantization_recipe(recipe.static_wi8_ai8())
    rng = np.random.default_rng(0)
    signature_input = next(
        iter(Interpreter(str(out / "dssdn-small.tflite")).get_signature_runner().get_input_details())
    )
    calib = {
        "serving_default": [
            {signature_input: rng.standard_normal((1, 51, 128, 2)).astype(np.float32)} for _ in range(4)
        ]
    }
    q.quantize(q.calibrate(calib)).export_model(str(out / "dssdn-small.int8.tflite"), overwrite=True)
    emit_c(fe, out / "mcu")
    interp = Interpreter(str(out / "dssdn-small.int8.tflite"))
    i8, o8 = interp.get_input_details()[0], interp.get_output_details()[0]
    nchw, nhwc_shape = [1, 2, 51, 128], [1, 51, 128, 2]
    details = {
        "dssdn-small.onnx": {
            "format": "onnx",
            "runtime": "onnxruntime",
            "precision": "fp32",
            "layout": "NCHW (batch, channels, frames, bands)",
            "input": _io(nchw, "float32"),
            "output": _io([1, 50], "float32"),
        },
        "dssdn-small.tflite": {
            "format": "tflite",
            "runtime": "LiteRT (ai-edge-litert)",
            "precision": "fp32",
            "layout": "NHWC (batch, frames, bands, channels)",
            "input": _io(nhwc_shape, "float32"),
            "output": _io([1, 50], "float32"),
        },
        "dssdn-small.int8.tflite": {
            "format": "tflite",
            "runtime": "LiteRT (ai-edge-litert)",
            "precision": "int8 (full integer: weights, activations, I/O)",
            "layout": "NHWC (batch, frames, bands, channels)",
            "input": _io(nhwc_shape, "int8", i8["quantization"]),
            "output": _io([1, 50], "int8", o8["quantization"]),
        },
    }
    artifacts = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        artifacts[rel] = {
            **details.get(rel, {"format": path.suffix.lstrip(".")}),
            "sha256": _sha(path),
            "bytes": path.stat().st_size,
        }
    manifest = {
        "format": 1,
        "name": "dssdn-small",
        "labels": [f"class{i}" for i in range(50)],
        "frontend": fe.to_dict(),
        "normalization": Normalization.identity(fe).to_dict(),
        "model_config": config_for("small").to_dict(),
        "complexity": measure(model, fe).to_dict(),
        "artifacts": artifacts,
        "tools": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
    return out


def _copy_export(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _bench_cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["bench", *args])
    return result.exit_code, result.output


def _one_error_line(output: str) -> str:
    errors = [ln for ln in output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, output
    return errors[0]


# ------------------------------------------------------------------------------ runner front end
@pytest.mark.parametrize(
    "cfg",
    [
        FrontendConfig(),
        FrontendConfig(
            sample_rate=22050,
            n_fft=512,
            hop_length=160,
            n_mels=64,
            fmin=50.0,
            fmax=9000.0,
            delta_width=0,
            split_band=32,
            segment_seconds=0.5,
        ),
        FrontendConfig(n_fft=2048, hop_length=512, n_mels=96, delta_width=9, split_band=40),
    ],
)
def test_runner_frontend_equals_frontend_features(cfg: FrontendConfig) -> None:
    """The device runner re-derives window and filterbank from the manifest numbers alone."""
    rng = np.random.default_rng(1)
    n = int(1.3 * cfg.sample_rate)
    t = np.arange(n) / cfg.sample_rate
    audio = (0.4 * np.sin(2 * np.pi * (200 + 2000 * t) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
    ours = logmel.LogMel(json.loads(json.dumps(cfg.to_dict()))).features(audio)
    ref = Frontend(cfg).features(audio)
    assert ours.shape == ref.shape and ours.dtype == np.float32
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)


def test_runner_frontend_on_real_audio(real_clips: list[Path]) -> None:
    from dssdn_edge.audio import load_audio

    fe = Frontend(FrontendConfig())
    for path in real_clips[:4]:
        audio = load_audio(path, fe.config.sample_rate)
        np.testing.assert_allclose(
            logmel.LogMel(fe.config.to_dict()).features(audio), fe.features(audio), rtol=0, atol=1e-5
        )


def test_runner_summary_equals_stats() -> None:
    samples = list(np.random.default_rng(2).gamma(2.0, 0.3, size=257))
    ours, ref = runner.summarize(samples), stats.summarize(samples).to_dict()
    assert ours.keys() == ref.keys()
    for key in ref:
        assert ours[key] == pytest.approx(ref[key], rel=1e-12)


# ------------------------------------------------------------------------------------ local runs
def test_local_bench_cli_writes_json_md_png(export_dir: Path, tmp_path: Path) -> None:
    code, output = _bench_cli(
        "--export",
        str(export_dir),
        "--runs",
        "5",
        "--warmup",
        "1",
        "--out",
        str(tmp_path),
        "--runtimes",
        "torch,onnxruntime,litert,tflm",
    )
    assert code == 0, output
    result = json.loads((tmp_path / "bench.json").read_text())
    assert (tmp_path / "bench.md").is_file() and (tmp_path / "bench_latency.png").stat().st_size > 0
    got = {(e["runtime"], e["artifact"]): e for e in result["results"]}
    assert ("litert", "dssdn-small.int8.tflite") in got and ("onnxruntime", "dssdn-small.onnx") in got
    assert ("torch", "torch eager") in got and ("tflm", "dssdn-small.int8.tflite") in got
    for e in result["results"]:
        assert e["error"] is None, e
        assert e["latency_ms"]["n"] == 5
        assert e["rtf"] > 0 and e["x_realtime"] > 0 and e["label"].startswith("class")
        assert e["activation_memory"]["bytes"] > 0 and e["activation_memory"]["method"]
    assert got[("litert", "dssdn-small.int8.tflite")]["input"]["dtype"] == "int8"
    assert got[("litert", "dssdn-small.int8.tflite")]["input"]["layout"] == "NHWC"
    assert "measured" in got[("tflm", "dssdn-small.int8.tflite")]["activation_memory"]["kind"]
    assert {"litert int8 / litert fp32", "onnxruntime fp32 / litert fp32", "torch eager / litert int8"} <= set(
        result["ratios"]
    )
    assert result["sysinfo"]["before"]["cores"] >= 1 and result["sysinfo"]["after"]["cpu_model"] is not None
    cpuinfo = Path("/proc/cpuinfo").read_text().split() if Path("/proc/cpuinfo").is_file() else []
    for flag in ("avx2", "avx512_vnni", "asimd", "asimddp"):  # the flags int8 speed depends on are recorded
        assert (flag in cpuinfo) == (flag in result["sysinfo"]["before"]["simd"]), flag
    assert result["device"] == {"kind": "cpu", "mode": "measured", "name": result["device"]["name"], "host": None}


def test_runner_ctrl_c_keeps_finished_results(export_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "partial.json"
    proc = subprocess.Popen(
        [
            sys.executable,
            runner.__file__,
            str(export_dir),
            "--runtimes",
            RUNTIMES,
            "--runs",
            "3000",
            "--warmup",
            "0",
            "--out",
            str(out),
            "--progress",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.startswith(f"{runner.PROGRESS_TAG} 2 "):  # front end and one model done
            proc.send_signal(signal.SIGINT)
            break
    proc.stderr.read()
    assert proc.wait() == runner.EXIT_INTERRUPTED
    partial = json.loads(out.read_text())
    assert partial["interrupted"] is True
    assert partial["frontend"]["ms_per_second"]["n"] == 3000
    assert len(partial["results"]) >= 1 and partial["results"][0]["latency_ms"]["n"] == 3000


# ------------------------------------------------------------------------------ estimates, MCU
def test_cortex_m_estimate_and_fit(export_dir: Path, tmp_path: Path) -> None:
    code, output = _bench_cli("--export", str(export_dir), "--device", "cortex-m7", "--out", str(tmp_path))
    assert code == 0, output
    result = json.loads((tmp_path / "bench.json").read_text())
    (est,) = result["estimates"]
    assert est["estimate"] is True and "CMSIS-NN" in est["source"] and est["low_ms"] <= est["ms"]
    fp = result["mcu"]["footprint"]
    assert fp["arena_bytes"] > 0 and fp["model_bytes"] == (export_dir / "dssdn-small.int8.tflite").stat().st_size
    assert "counted from mcu/dssdn_frontend_tables.h" in fp["sources"]["frontend_tables"]
    assert {f["board"] for f in result["mcu"]["fits"]} == {"STM32F407", "STM32H743"}
    assert all(isinstance(f["fits"], bool) for f in result["mcu"]["fits"])
    assert "ESTIMATES (not measured)" in (tmp_path / "bench.md").read_text()


def test_rpi_estimate_without_host(export_dir: Path) -> None:
    result = run_bench(BenchOptions(device="rpi", export_dir=export_dir, estimate=True, progress=False))
    assert result["device"]["mode"] == "estimate" and result["results"] == []
    assert {e["device"] for e in result["estimates"]} == {"Raspberry Pi 4", "Raspberry Pi 5"}
    assert all(e["estimate"] is True and "MobileNet" in e["source"] for e in result["estimates"])


def test_estimates_follow_their_sources() -> None:
    from dssdn_edge.bench import devices

    (m4,) = devices.estimates_for("cortex-m4", 10_000_000, 1)
    assert m4.ms == pytest.approx(10e6 * 9 / 168e6 * 1e3) and m4.low_ms == pytest.approx(10e6 * 0.5 / 168e6 * 1e3)
    pi4_int8 = next(
        e
        for e in devices.estimates_for("rpi", 300_000_000, 4)
        if e.device == "Raspberry Pi 4" and e.precision == "int8"
    )
    assert pi4_int8.low_ms <= 20.0 <= pi4_int8.high_ms  # MobileNet v2 int8 on 4 threads: 20 ms (export.md)
    with pytest.raises(Exception, match="unknown device"):
        devices.check_device("esp32")


def test_sysinfo_parses_a_raspberry_pi_report() -> None:
    """The text the sysinfo script prints on a throttled Pi 4 (values as the firmware reports them)."""
    from dssdn_edge.bench import report
    from dssdn_edge.bench.sysinfo import parse

    info = parse(
        "hostname=pi4\nmachine=aarch64\ncpu_model=Cortex-A72\ncores=4\ngovernor=ondemand\n"
        "cur_freq_khz=600000\nmax_freq_khz=1500000\ndevice_model=Raspberry Pi 4 Model B Rev 1.4\n"
        "temp_millic=61835\nvcgencmd_temp=temp=62.3'C\nthrottled=throttled=0x50005\nloadavg=0.10 0.20 0.30\n"
        "simd=asimd \n"
    )
    assert info.is_raspberry_pi and info.cores == 4 and info.governor == "ondemand"
    assert info.simd == ["asimd"]  # a Pi 4 has NEON but not the dot product: int8 gains little there
    assert "SIMD asimd" in report.sys_line(info.to_dict())
    assert info.temperature_c == 62.3 and info.temperature_source == "vcgencmd measure_temp"
    assert info.max_freq_mhz == 1500 and info.throttled == "0x50005"
    assert info.throttle_flags == [
        "under-voltage now",
        "throttled now",
        "under-voltage has occurred",
        "throttling has occurred",
    ]


# ------------------------------------------------------------------------------------ bad input
def test_export_without_manifest(tmp_path: Path) -> None:
    code, output = _bench_cli("--export", str(tmp_path))
    assert code == 1 and "manifest" in _one_error_line(output)


def test_manifest_hash_mismatch(export_dir: Path, tmp_path: Path) -> None:
    broken = _copy_export(export_dir, tmp_path / "broken")
    target = broken / "dssdn-small.tflite"
    data = bytearray(target.read_bytes())
    data[-1] ^= 0xFF
    target.write_bytes(bytes(data))
    code, output = _bench_cli("--export", str(broken), "--runs", "5")
    line = _one_error_line(output)
    assert code == 1 and "dssdn-small.tflite" in line and "sha256" in line


def test_runner_itself_rejects_hash_mismatch(export_dir: Path, tmp_path: Path) -> None:
    """The device-side check, for a copy that broke after the host verified it."""
    broken = _copy_export(export_dir, tmp_path / "broken")
    (broken / "dssdn-small.onnx").write_bytes(b"truncated")
    with pytest.raises(runner.RunnerError, match="does not match manifest.json"):
        runner.load_manifest(str(broken))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--device", "raspberry"], "unknown device 'raspberry'"),
        (["--runs", "0"], "'--runs': 0 is not in the range 1<=x"),
        (["--device", "cpu", "--estimate"], "--estimate is for"),
        (["--runtimes", "litert,tensorrt"], "unknown runtime(s) tensorrt"),
        (["--host", "pi@raspberrypi.local"], "--host is for --device rpi only"),
        (["--device", "rpi", "--host", "pi@host:99999"], "port must be 1-65535"),
        (["--device", "rpi", "--host", "pi@"], "expected USER@HOST[:PORT]"),
    ],
)
def test_bad_arguments(export_dir: Path, args: list[str], needle: str) -> None:
    code, output = _bench_cli("--export", str(export_dir), *args)
    assert code in (1, 2) and needle in _one_error_line(output)  # 2: a usage error caught by click's types


def test_rpi_without_host_here_is_an_error(export_dir: Path) -> None:
    from dssdn_edge.bench.sysinfo import collect_local

    if collect_local().is_raspberry_pi:
        pytest.skip("this machine is a Raspberry Pi: --device rpi runs locally here")
    code, output = _bench_cli("--export", str(export_dir), "--device", "rpi")
    assert code == 1 and "--host" in _one_error_line(output)


# ------------------------------------------------------------------------------------- real sshd
_free_port, _keygen = free_port, keygen


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    """A real OpenSSH server on 127.0.0.1:<free port> for the current user, throw-away keys in tmp
    (tests/sshd_server.py, shared with the emulated-Pi tests)."""
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd"))
    except SshdUnavailable as exc:
        pytest.skip(str(exc))
    yield server.as_dict()
    server.stop()


def _host(sshd: dict) -> str:
    return f"{sshd['user']}@127.0.0.1:{sshd['port']}"


def _bench_rpi(export_dir: Path, host: str, ssh_config: Path, *extra: str) -> tuple[int, str]:
    """``dssdn-edge bench --device rpi`` against ``host`` with the test's ssh config."""
    return _bench_cli(
        "--export", str(export_dir), "--device", "rpi", "--host", host, "--ssh-config", str(ssh_config), *extra
    )


def _bench_this_python(export_dir: Path, sshd: dict, *extra: str) -> tuple[int, str]:
    """``_bench_rpi`` on the test's sshd, with this machine's python standing in for the device's."""
    return _bench_rpi(export_dir, _host(sshd), sshd["dir"] / "ssh_config", "--remote-python", sys.executable, *extra)


def _structure(result: dict) -> tuple:
    entries = {(e["runtime"], e["artifact"]): tuple(sorted(e)) for e in result["results"]}
    return tuple(sorted(set(result) - {"remote"})), entries, tuple(sorted(result["sysinfo"]))


def test_remote_bench_has_the_structure_of_a_local_run(export_dir: Path, sshd: dict, tmp_path: Path) -> None:
    common = ["--runtimes", RUNTIMES, "--runs", "5", "--warmup", "1"]
    code, output = _bench_this_python(export_dir, sshd, *common, "--out", str(tmp_path / "remote"))
    assert code == 0, output
    code, output = _bench_cli("--export", str(export_dir), *common, "--out", str(tmp_path / "local"))
    assert code == 0, output
    remote = json.loads((tmp_path / "remote" / "bench.json").read_text())
    local = json.loads((tmp_path / "local" / "bench.json").read_text())
    assert _structure(remote) == _structure(local)
    assert all(e["error"] is None for e in remote["results"]) and len(remote["results"]) == 3
    assert remote["device"]["mode"] == "measured" and remote["remote"]["target"] == _host(sshd)
    assert remote["sysinfo"]["before"]["cores"] and remote["sysinfo"]["after"]["cores"]
    assert remote["remote"]["probe"]["runtimes"].keys() >= {"litert", "onnxruntime"}
    # this x86 python stands in for a Pi here: the report must say it is not one
    assert any("not aarch64" in w for w in remote["warnings"]) and local["warnings"] == []
    leftovers = subprocess.run(
        [
            "ssh",
            "-F",
            str(sshd["dir"] / "ssh_config"),
            "-p",
            str(sshd["port"]),
            "-o",
            "BatchMode=yes",
            f"{sshd['user']}@127.0.0.1",
            "ls -d /tmp/dssdn-bench.* 2>/dev/null | wc -l",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert leftovers.stdout.strip() == "0"  # the device's temp dir was removed


def test_remote_unknown_host_key(export_dir: Path, sshd: dict) -> None:
    code, output = _bench_rpi(export_dir, _host(sshd), sshd["dir"] / "ssh_config_unknown")
    line = _one_error_line(output)
    assert code == 1 and f"host key for 127.0.0.1:{sshd['port']} is not known" in line and "ssh-keyscan" in line


def test_remote_changed_host_key(export_dir: Path, sshd: dict, tmp_path: Path) -> None:
    _keygen(tmp_path / "other")
    other = " ".join((tmp_path / "other.pub").read_text().split()[:2])
    (tmp_path / "known_hosts").write_text(f"[127.0.0.1]:{sshd['port']} {other}\n")
    config = (
        (sshd["dir"] / "ssh_config")
        .read_text()
        .replace(str(sshd["dir"] / "known_hosts"), str(tmp_path / "known_hosts"))
    )
    (tmp_path / "ssh_config").write_text(config)
    code, output = _bench_rpi(export_dir, _host(sshd), tmp_path / "ssh_config")
    line = _one_error_line(output)
    assert code == 1 and "has CHANGED" in line and "ssh-keygen -R" in line


def test_remote_connection_refused(export_dir: Path, sshd: dict) -> None:
    port = _free_port()  # nothing listens there
    code, output = _bench_rpi(export_dir, f"{sshd['user']}@127.0.0.1:{port}", sshd["dir"] / "ssh_config")
    assert code == 1 and "connection refused" in _one_error_line(output)


def test_remote_python_without_runtimes(export_dir: Path, sshd: dict, tmp_path: Path) -> None:
    """A bare venv: python3 runs, but numpy and every runtime are missing there."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "bare")], check=True)
    code, output = _bench_rpi(
        export_dir,
        _host(sshd),
        sshd["dir"] / "ssh_config",
        "--remote-python",
        str(tmp_path / "bare" / "bin" / "python"),
    )
    line = _one_error_line(output)
    assert code == 1 and "cannot import numpy" in line and "importable runtimes: none" in line


def test_remote_runtime_missing_by_name(export_dir: Path, sshd: dict) -> None:
    code, output = _bench_this_python(export_dir, sshd, "--runtimes", "tflite-runtime")
    line = _one_error_line(output)
    assert code == 1 and "tflite-runtime not importable" in line and "litert" in line


def test_remote_no_python(export_dir: Path, sshd: dict) -> None:
    code, output = _bench_rpi(
        export_dir, _host(sshd), sshd["dir"] / "ssh_config", "--remote-python", "/nonexistent/python3"
    )
    assert code == 1 and "no /nonexistent/python3 on" in _one_error_line(output)


# ------------------------------------------------------------------------ int8 file rewrites (issue 11)
def _int8_outputs(model: bytes, xs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, int]:
    """Raw int8 outputs of LiteRT (XNNPACK) and of TFLite Micro, and LiteRT's delegate partition count."""
    from dssdn_edge import runtime
    from dssdn_edge.export.cpu_layout import outputs

    micro = runtime.load(model, kind="tflm")
    parts = runtime.load(model, kind="tflite").info()["delegate_partitions"]
    return outputs(model, xs), np.stack([micro.invoke(x) for x in xs[:3]]), parts


def _raw_inputs(model: bytes) -> list[np.ndarray]:
    from dssdn_edge.export.cpu_layout import check_inputs

    return check_inputs(model, np.random.default_rng(5).standard_normal((6, 2, 51, 128)).astype(np.float32))


def test_lean_int8_file_is_smaller_and_bit_identical_in_litert_and_tflm(export_dir: Path) -> None:
    from dssdn_edge.export.tflite import lean, size_breakdown

    fat = (export_dir / "dssdn-small.int8.tflite").read_bytes()  # as ai-edge-quantizer wrote it
    slim = lean(fat)
    xs = _raw_inputs(fat)
    ref, got = _int8_outputs(fat, xs), _int8_outputs(slim, xs)
    assert np.array_equal(ref[0], got[0]) and np.array_equal(ref[1], got[1]) and ref[2] == got[2] == 1
    before, after = size_breakdown(fat), size_breakdown(slim)
    assert 50_000 < after["weights"] <= before["weights"]  # compact also drops duplicate constant buffers
    assert after["file_bytes"] < 0.8 * before["file_bytes"], (before, after)
    again = lean(slim)  # nothing left to strip (re-serialising may reorder bytes, never grow or change outputs)
    assert len(again) <= len(slim) and np.array_equal(_int8_outputs(again, xs)[0], got[0])


def test_packed_cpu_layout_is_bit_identical(export_dir: Path) -> None:
    from dssdn_edge.export.cpu_layout import outputs, pack_pixels
    from dssdn_edge.export.tflite import lean, op_counts

    plain = lean((export_dir / "dssdn-small.int8.tflite").read_bytes())
    packed, report = pack_pixels(plain)
    assert len(report.packed) >= 10 and report.macs_added > 0
    assert op_counts(packed)["RESHAPE"] > 0 and "DEPTHWISE_CONV_2D" in op_counts(packed)
    xs = _raw_inputs(plain)
    assert np.array_equal(outputs(packed, xs), outputs(plain, xs))


def test_runner_reports_stages_and_streaming(export_dir: Path) -> None:
    manifest = runner.load_manifest(str(export_dir))
    pipe = logmel.Pipeline(manifest)
    path = str(export_dir / "dssdn-small.int8.tflite")
    res = runner.bench_backend(lambda: runner.open_runtime(path, "litert", path, 1, 2, "NHWC"), pipe, 5, 1)
    stages = res["stages_ms"]
    assert set(stages) == {*runner.STAGES, "total"}
    parts = sum(stages[k]["mean"] for k in runner.STAGES)
    assert stages["total"]["mean"] == pytest.approx(parts, rel=0.05)  # the stages are the whole loop
    stream = res["stream"]
    assert stream["hop_seconds"] == 0.5 and stream["hops"] >= 10
    assert stream["ms_per_audio_second"] == pytest.approx(stream["stages_ms_per_hop"]["total"]["p50"] / 0.5)


def softmax_mean(logits: np.ndarray) -> np.ndarray:
    """The reference WindowScores must equal: class probabilities averaged over the windows of ``logits``."""
    z = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return (z / z.sum(axis=-1, keepdims=True)).mean(axis=0)


def test_window_scores_are_softmax_mean_bit_for_bit(export_dir: Path) -> None:
    """The bench's post-processing of one window (a table for int8 outputs, fewer calls for float ones) must give
    ``softmax_mean(dequantize(raw))`` to the bit: every int8 maximum, ties at the top, float logits."""
    rng = np.random.default_rng(7)
    for rel, layout in (("dssdn-small.int8.tflite", "NHWC"), ("dssdn-small.tflite", "NHWC"),
                        ("dssdn-small.onnx", None)):
        path = str(export_dir / rel)
        model = runner.open_runtime(rel, "onnxruntime" if rel.endswith(".onnx") else "litert", path, 1, 2, layout)
        scores = runner.WindowScores(model)
        out = model.invoke(np.zeros(model.input_shape, np.dtype(model.input_dtype or np.float32)))
        if out.dtype == np.int8:
            raws = []
            for top in range(-128, 128):
                raw = rng.integers(-128, top + 1, size=out.shape).astype(np.int8)
                raw.flat[rng.integers(raw.size, size=2)] = top
                raws.append(raw)
        else:
            raws = [(rng.standard_normal(out.shape) * 8).astype(out.dtype) for _ in range(50)]
        raws.append(out)
        for raw in raws:
            want = softmax_mean(model.dequantize(raw).reshape(1, -1))
            got = scores(raw)
            assert got.dtype == want.dtype and np.array_equal(got.view(np.uint32), want.view(np.uint32)), rel
        assert (scores._table is not None) == (out.dtype == np.int8)  # noqa: SLF001 - the int8 table was used


def test_runner_measures_both_front_ends_side_by_side(export_dir: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    """With the C library the host builds, every features-in model is measured with the numpy and the C front
    end in one run; the C one checks out against numpy here and is the one the top-level figures use. Without a
    library (or with one for another front end), numpy runs alone and one line says why."""
    from dssdn_edge.bench.local import frontend_library

    manifest = runner.load_manifest(str(export_dir))
    lib, why = frontend_library(manifest["frontend"])
    if lib is None:
        pytest.skip(why)
    res = runner.run_benchmark(str(export_dir), "litert", 1, 6, 1, frontend_lib=str(lib))
    fe = res["frontend"]
    assert fe["implementation"] == "c" and set(fe["implementations"]) == {"numpy", "c"}
    assert fe["c_library"]["status"] == "loaded" and fe["check"]["ok"] and fe["check"]["int8_max_step"] <= 1
    for e in res["results"]:
        assert e["error"] is None and e["frontend"] == "c" and set(e["by_frontend"]) == {"numpy", "c"}
        c, numpy = e["by_frontend"]["c"], e["by_frontend"]["numpy"]
        assert c["stages_ms"]["total"]["n"] == numpy["stages_ms"]["total"]["n"] == 6
        assert e["stages_ms"] == c["stages_ms"] and e["stream"] == c["stream"]
        assert c["stream"]["hops"] >= 10 and c["e2e_over_invoke"] > 1
        if e["input"]["dtype"] == "int8":  # the C rows are the input tensor: no numpy normalise/quantise
            assert c["stages_ms"]["frontend"]["note"].startswith("C:")
    md = bench_report.markdown({**res, "device": {"name": "x", "mode": "measured"}})
    assert "| litert | dssdn-small.int8.tflite | c |" in md and "| litert | dssdn-small.int8.tflite | numpy |" in md
    capsys.readouterr()
    alone = runner.run_benchmark(str(export_dir), "litert", 1, 3, 1)
    assert alone["frontend"]["implementation"] == "numpy" and set(alone["frontend"]["implementations"]) == {"numpy"}
    assert all(set(e["by_frontend"]) == {"numpy"} for e in alone["results"])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "numpy front end only" in err[0] and "no C library given" in err[0]
    other = dict(manifest["frontend"], n_mels=64, split_band=32)
    assert runner.load_c_front({"frontend": other}, str(lib))[0] is None
