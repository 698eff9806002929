"""The device runner on an emulated Raspberry Pi OS userland (aarch64, Debian bookworm, qemu-user-static).

Real parts only: Debian's arm64 python3.11 and numpy 1.24 (what Raspberry Pi OS Bookworm ships), the real
aarch64 wheels of tflite-runtime 2.14 and ai-edge-litert 2.3, the real export of the shipped dssdn-small,
real ESC-50 clips, and a real OpenSSH server on 127.0.0.1 (tests/sshd_server.py). The userland is built
once into the cache folder ($DSSDN_CACHE or .cache/) and reused; it is skipped with the reason when
Debian's archive cannot be reached. No timing is asserted: emulated timings are not a Pi's.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_one_line_error, invoke
from device_helpers import emulated_boards, loudest_seconds
from sshd_server import SshdUnavailable, free_port, start_sshd

from dssdn_edge.device import userland as ul
from dssdn_edge.device.agreement import agreement
from dssdn_edge.errors import ArchiveUnreachable

N_CLIPS = 12

@pytest.fixture(scope="module")
def boards() -> dict:
    return emulated_boards()


@pytest.fixture(scope="module")
def clips(real_clips: list[Path]) -> list[np.ndarray]:
    """The loudest second of clips of N_CLIPS different classes."""
    return loudest_seconds(real_clips[::2][:N_CLIPS])


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory):
    try:
        server = start_sshd(tmp_path_factory.mktemp("sshd-device"))
    except SshdUnavailable as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()


# ------------------------------------------------------------------------------------ the runtimes
@pytest.mark.parametrize("runtime", ["tflite-runtime", "litert"])
def test_runtime_on_emulated_pi4_agrees_with_x86(
    runtime: str, boards: dict, shared_small_export: Path, clips: list, tmp_path: Path
) -> None:
    """Debian's numpy 1.24 + each runtime on the Pi 4's core against the very same runtime and numpy versions
    on this x86 host, on real clips: the device's own front end gives the same features, fp32 outputs agree
    to float round-off, and int8 outputs agree to a few quantisation steps. ai-edge-litert is bit-identical;
    tflite-runtime 2.14's ARM and x86 int8 kernels round differently (how far depends on the weights' scales:
    with the shipped dssdn-small most logits are 0-1 step apart, a few percent 2-4), so its int8 top-1 may
    differ only where x86's top-1 is within that difference of the runner-up (a near tie)."""
    try:
        res = agreement(boards["rpi4"], runtime, shared_small_export, clips, tmp_path)
    except ArchiveUnreachable as exc:
        pytest.skip(f"cannot install the x86 reference: {exc}")
    dev, x86 = res["device"], res["x86"]
    assert (dev["machine"], dev["python"], dev["numpy"]) == ("aarch64", "3.11.2", "1.24.2")
    assert list(dev["runtimes"]) == [runtime]  # one runtime per interpreter, as a Pi user installs it
    assert dev["device"]["cpu_model"] == "Cortex-A72" and dev["device"]["emulated"]
    assert x86["machine"] == "x86_64" and (x86["runtimes"], x86["numpy"]) == (dev["runtimes"], dev["numpy"])
    assert res["features_max_abs"] <= 1e-5
    models = res["models"]
    assert {m["dtype"][0] for m in models.values()} == {"f", "i"} and len(models) >= 4  # fp32 and int8, 2 paths
    for key, m in models.items():
        assert m["clips"] == len(clips)
        if m["dtype"].startswith("float"):
            assert m["max_abs"] <= 1e-4 and m["top1_flips"] == 0, (key, m)
            continue
        hist = m["steps_histogram"]
        if runtime == "litert":
            assert m["max_steps"] == 0, (key, m)  # bit-identical to x86
        else:
            # tflite-runtime 2.14's ARM requantisation rounds differently, and the differences compound over
            # the layers (measured with the shipped dssdn-small: 38 % of the logits one step apart, 3.5 % two or
            # three, one logit in 600 four); what must hold is that the device classifies alike
            assert m["max_steps"] <= 4 and sum(hist[2:]) <= 0.05 * sum(hist), (key, hist)
        # a top-1 flip only where x86's winner is within twice that clip's difference of the runner-up
        for i in m["flipped"]:
            assert m["x86_margin_steps"][i] <= 2 * m["max_steps_per_clip"][i], (key, i, m)


# ---------------------------------------------------------------------------- bench over the real sshd
def _bench(sshd, *args: str):
    return invoke("bench", "--device", "rpi", "--ssh-config", sshd.ssh_config, "--runs", "3", "--warmup", "1",
                  *args)


def test_bench_rpi_end_to_end_reports_the_devices_own_facts(
    boards: dict, shared_small_export: Path, sshd, tmp_path: Path
) -> None:
    res = _bench(sshd, "--export", shared_small_export, "--host", sshd.host, "--remote-python",
                 boards["rpi4"].python, "--out", tmp_path)
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["device"]["mode"] == "emulated" and result["device"]["name"].startswith("Cortex-A72")
    env = result["environment"]
    assert (env["machine"], env["python"], env["numpy"]) == ("aarch64", "3.11.2", "1.24.2")
    assert env["device"]["cpu_model"] == "Cortex-A72" and env["device"]["simd"] == ["asimd"]
    assert env["device"]["os"] == "Debian GNU/Linux 12 (bookworm)"
    assert result["runtimes_available"] == {"tflite-runtime": "2.14.0"}
    assert result["remote"]["device"] == env["device"]
    # the C front end, cross-built for aarch64 and shipped with the runner, ran there and matched the device's numpy
    fe = result["frontend"]
    assert result["remote"]["frontend_lib"]["shipped"], result["remote"]["frontend_lib"]
    assert fe["implementation"] == "c" and fe["c_library"]["status"] == "loaded"
    assert fe["check"]["ok"] and fe["check"]["max_abs_within_60db"] <= 1e-4 and fe["check"]["int8_max_step"] <= 1
    features_in = [e for e in result["results"] if e["precision"] in ("int8", "fp32")]
    assert features_in and all(set(e["by_frontend"]) == {"numpy", "c"} and e["frontend"] == "c" for e in features_in)
    assert "| tflite-runtime | dssdn-small.int8.tflite | c |" in (tmp_path / "bench.md").read_text()
    assert result["warnings"] == []  # aarch64, as --device rpi expects
    assert {e["artifact"] for e in result["results"]} == {
        r for r in json.loads((shared_small_export / "manifest.json").read_text())["artifacts"] if r.endswith(".tflite")
    }
    assert all(e["error"] is None and e["runtime"] == "tflite-runtime" for e in result["results"])
    # the ssh host's shell saw this x86 host: kept, but labelled, never taken for the device
    assert result["sysinfo"]["before"]["machine"] == "x86_64"
    md = (tmp_path / "bench.md").read_text()
    assert "(emulated)" in md.splitlines()[0] and "EMULATED" in md and "not the device's" in md
    assert "device, as its own python sees it: Cortex-A72; aarch64" in md and "read by sh on the ssh host" in md


def test_bench_warns_when_the_remote_python_is_not_aarch64(shared_small_export: Path, sshd, tmp_path: Path) -> None:
    res = _bench(sshd, "--export", shared_small_export, "--host", sshd.host, "--remote-python", sys.executable,
                 "--runtimes", "litert", "--out", tmp_path)
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "bench.json").read_text())
    assert result["device"]["mode"] == "measured"
    (warning,) = result["warnings"]
    assert "x86_64, not aarch64" in warning and sys.executable in warning
    assert f"**Warning:** {warning}" in (tmp_path / "bench.md").read_text()


def test_fleet_of_two_emulated_pis_and_a_failing_device(
    boards: dict, shared_small_export: Path, sshd, tmp_path: Path
) -> None:
    """Pi 4 (tflite-runtime) and Pi 5 (ai-edge-litert) behind the one sshd, in parallel, plus a device whose
    python is missing: its error is reported, the others' results are not lost."""
    hosts = tmp_path / "hosts.txt"
    hosts.write_text(
        "# name  target  remote python\n"
        f"pi4 {sshd.host} {boards['rpi4'].python_for('tflite-runtime')}\n"
        f"pi5 {sshd.host} {boards['rpi5'].python_for('litert')}\n"
        f"broken {sshd.host} /nonexistent/python3\n"
    )
    out = tmp_path / "fleet"
    res = _bench(sshd, "--export", shared_small_export, "--hosts", hosts, "--out", out)
    assert_one_line_error(res, "broken", "no /nonexistent/python3 on")
    fleet = json.loads((out / "fleet.json").read_text())
    by_name = {d["name"]: d for d in fleet["devices"]}
    assert fleet["failed"] == ["broken"] and by_name["pi4"]["ok"] and by_name["pi5"]["ok"]
    manifest = json.loads((shared_small_export / "manifest.json").read_text())
    n_tflite = sum(rel.endswith(".tflite") for rel in manifest["artifacts"])
    (a, b) = (by_name["pi4"], by_name["pi5"])
    assert a["started"] < b["finished"] and b["started"] < a["finished"]  # ran at the same time
    for name, cpu, rt, version in (("pi4", "Cortex-A72", "tflite-runtime", "2.14.0"),
                                   ("pi5", "Cortex-A76", "litert", "2.3.0")):
        result = by_name[name]["result"]
        assert result["device"]["mode"] == "emulated" and result["environment"]["device"]["cpu_model"] == cpu
        assert result["runtimes_available"] == {rt: version}
        assert all(e["error"] is None for e in result["results"]) and len(result["results"]) == n_tflite
        assert (out / name / "bench.json").is_file() and (out / name / "bench_latency.png").stat().st_size > 0
    assert "asimddp" in by_name["pi5"]["result"]["environment"]["device"]["simd"]  # the A76's dot product
    md = (out / "fleet.md").read_text()
    rows = [ln for ln in md.splitlines() if ln.startswith(("| pi", "| broken"))]
    assert len(rows) == 2 * n_tflite + 1  # one per device and artifact, one for the failed device
    pi4 = "| pi4 | emulated | aarch64 | Cortex-A72 | 3.11.2 | 1.24.2 | tflite-runtime 2.14.0 |"
    pi5 = "| pi5 | emulated | aarch64 | Cortex-A76 | 3.11.2 | 1.24.2 | litert 2.3.0 |"
    assert sum(r.startswith(pi4) for r in rows) == n_tflite and sum(r.startswith(pi5) for r in rows) == n_tflite
    assert "**failed**" in rows[-1] and "/nonexistent/python3" in rows[-1]
    assert "timings are not the device's" in md
    assert (out / "fleet_latency.png").stat().st_size > 10_000
    assert not list(out.rglob(".*.tmp*"))


def test_fleet_hosts_file_errors(shared_small_export: Path, tmp_path: Path) -> None:
    bad = tmp_path / "hosts.txt"
    bad.write_text("pi4 root@127.0.0.1:2222 /usr/bin/python3 extra-word\n")
    assert_one_line_error(invoke("bench", "--export", shared_small_export, "--device", "rpi", "--hosts", bad),
                          f"{bad}:1", "expected NAME USER@HOST[:PORT]")
    bad.write_text("a root@h\na root@g\n")
    assert_one_line_error(invoke("bench", "--export", shared_small_export, "--device", "rpi", "--hosts", bad),
                          "device 'a' given twice")
    assert_one_line_error(invoke("bench", "--export", shared_small_export, "--device", "rpi", "--hosts",
                                 tmp_path / "missing.txt"), "missing.txt: hosts file not found")


# ------------------------------------------------------------------------------- building the userland
def test_emulate_cli_is_idempotent_and_labels_itself(boards: dict, tmp_path: Path) -> None:
    first = invoke("device", "emulate", "rpi5", tmp_path / "pi5", "--runtime", "litert")
    assert first.exit_code == 0, first.output
    record = json.loads((tmp_path / "pi5" / "device.json").read_text())
    assert record["qemu_cpu"] == "cortex-a76" and record["userland_tree_sha256"] == boards["rpi5"].userland.tree_sha256
    wrapper = (tmp_path / "pi5" / "python3").read_text()
    assert "EMULATED Raspberry Pi 5" in wrapper and "-cpu cortex-a76" in wrapper and "site/litert" in wrapper
    mtime = (tmp_path / "pi5" / "python3").stat().st_mtime_ns
    again = invoke("device", "emulate", "rpi5", tmp_path / "pi5", "--runtime", "litert")
    assert again.exit_code == 0 and (tmp_path / "pi5" / "python3").stat().st_mtime_ns == mtime  # reused as is
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("mine")
    assert_one_line_error(invoke("device", "emulate", "rpi4", tmp_path / "other"), "not empty")
    assert (tmp_path / "other" / "keep.txt").read_text() == "mine"


def test_unreachable_archive_is_one_clear_error(tmp_path: Path) -> None:
    if shutil.which("qemu-aarch64-static") is None:
        pytest.skip("qemu-aarch64-static not installed (apt-get install qemu-user-static)")
    mirror = f"http://127.0.0.1:{free_port()}/debian"  # nothing listens there
    res = invoke("device", "emulate", "rpi4", tmp_path / "pi", "--cache", tmp_path / "cache",
                 env={"DSSDN_DEBIAN_MIRROR": mirror})
    assert_one_line_error(res, mirror, "unreachable")
    assert not (tmp_path / "pi").exists()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir() and p.name.startswith("pi-userland")]


def test_half_built_userland_is_detected_and_rebuilt(boards: dict, tmp_path: Path) -> None:
    """A copy of the cached userland, broken as an interrupted run leaves it (a package half unpacked, a
    .partial folder beside it), is detected by its recorded hash and rebuilt to the very same tree."""
    land = boards["rpi4"].userland
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copytree(land.path, cache / land.path.name, symlinks=True)
    if (land.path.parent / "downloads").is_dir():  # the .debs and wheels: the rebuild need not fetch them
        shutil.copytree(land.path.parent / "downloads", cache / "downloads", symlinks=True)
    broken = cache / land.path.name
    (broken / "root" / "usr" / "lib" / "python3" / "dist-packages" / "numpy" / "__init__.py").unlink()
    (cache / (land.path.name + ".partial")).mkdir()
    why = ul.check(broken)
    assert why is not None and "differs from the recorded" in why
    log: list[str] = []
    try:
        rebuilt = ul.ensure_userland(ul.UserlandSpec.from_env(), cache, log.append)
    except ul.ArchiveUnreachable as exc:
        pytest.skip(f"rebuild needs Debian's archive: {exc}")
    assert any("rebuilding" in m for m in log) and any(".partial" in m for m in log)
    assert ul.check(rebuilt.path) is None
    assert rebuilt.tree_sha256 == land.tree_sha256  # reproducible: the same packages give the same tree
    assert not (cache / (land.path.name + ".partial")).exists()
