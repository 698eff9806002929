"""Nothing wrong, nothing lost: each defect found by probing the CLI as a careless or hostile user, and a
table of bad inputs walked through every command (one ``error:`` line, non-zero exit, no traceback,
nothing half-written)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import assert_one_line_error, invoke

from dssdn_edge.pretrained import pretrained_path

REPO = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------- 1. stale caches
def esc50_copy(data_root: Path, dst: Path, rows: list[dict], audio_of) -> Path:
    """An ESC-50-layout folder with ``rows`` of metadata whose audio files are symlinks to ``audio_of(row)``."""
    (dst / "audio").mkdir(parents=True)
    for r in rows:
        (dst / r["filename"]).symlink_to(audio_of(r))
    with (dst / "metadata.csv").open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return dst


def test_feature_cache_is_keyed_on_the_files_not_their_names(data_root: Path, tmp_path: Path) -> None:
    with (data_root / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5"][::10]  # 40 clips, all 40 share no class
    dog = data_root / next(r["filename"] for r in rows if r["label"] == "dog")
    a = esc50_copy(data_root, tmp_path / "A", rows, lambda r: data_root / r["filename"])
    b = esc50_copy(data_root, tmp_path / "B", rows, lambda r: dog)  # same names, every clip the dog
    env = {"DSSDN_CACHE": str(tmp_path / "cache"), "DSSDN_PROGRESS": "0"}
    out_a = invoke("eval", "--data", a, "--out", tmp_path / "ea", env=env)
    out_b = invoke("eval", "--data", b, "--out", tmp_path / "eb", env=env)
    fresh = invoke("eval", "--data", b, "--out", tmp_path / "ec", env={**env, "DSSDN_CACHE": str(tmp_path / "c2")})
    assert out_a.exit_code == out_b.exit_code == fresh.exit_code == 0, out_b.output
    acc = {k: json.loads((tmp_path / k / "dssdn-small-test.json").read_text())["accuracy"] for k in ("ea", "eb", "ec")}
    assert acc["eb"] == acc["ec"]  # B is scored on B's audio, whatever A left in the cache
    assert acc["eb"] <= 3 / 40  # one prediction for every clip: right only for the dog clips


# --------------------------------------------------------------------------- 2. silent overwrites
def test_eval_and_bench_refuse_to_overwrite(shared_small_export: Path, tmp_path: Path) -> None:
    out = tmp_path / "ev"
    assert invoke("eval", "--out", out).exit_code == 0
    before = (out / "dssdn-small-test.json").read_bytes()
    assert_one_line_error(invoke("eval", "--out", out), "--force")
    assert (out / "dssdn-small-test.json").read_bytes() == before
    assert invoke("eval", "--out", out, "--force").exit_code == 0
    bench = tmp_path / "bench"
    args = ("bench", "--export", shared_small_export, "--runtimes", "litert", "--runs", "3", "--warmup", "1",
            "--out", bench)
    assert invoke(*args).exit_code == 0
    assert_one_line_error(invoke(*args), "--force")
    assert invoke(*args, "--force").exit_code == 0


# ------------------------------------------------------------------------ 3. concurrent exports
def test_two_exports_into_one_folder_one_wins(tmp_path: Path) -> None:
    out = tmp_path / "exp"
    env = {**os.environ, "DSSDN_PROGRESS": "0"}
    cmd = [sys.executable, "-m", "dssdn_edge.cli", "export", "--size", "small", "--formats", "tflite", "--no-int8",
           "--out", str(out), "--force"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    results = [(p.wait(timeout=900), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    err = next(e for rc, e in results if rc == 1).strip()
    assert err.startswith("error:") and "another export" in err and "Traceback" not in err
    from dssdn_edge.export.manifest import load_manifest

    load_manifest(out, verify=True)  # the winner's export is complete
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]  # no staging left behind


# ------------------------------------------------------------ 4 + 6 + 10. damaged manifests, foreign files
def damaged(export: Path, tmp_path: Path, change) -> Path:
    dst = tmp_path / "exp"
    shutil.copytree(export, dst)
    path = dst / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))
    return dst


MANIFEST_DAMAGE = {
    "no normalization": (lambda m: m.pop("normalization"), "normalization"),
    "no labels": (lambda m: m.pop("labels"), "labels"),
    "no frontend": (lambda m: m.pop("frontend"), "frontend"),
    "labels not a list": (lambda m: m.__setitem__("labels", "dog"), "labels"),
    "one label short": (lambda m: m["labels"].pop(), "outputs but there are"),
    "hop 0": (lambda m: m["frontend"].__setitem__("hop_length", 0), "hop_length"),
    "n_fft not a power of two": (lambda m: m["frontend"].__setitem__("n_fft", 1000), "n_fft"),
    "sample rate text": (lambda m: m["frontend"].__setitem__("sample_rate", "16k"), "sample_rate"),
    "std zero": (lambda m: m["normalization"]["std"][0].__setitem__(0, 0.0), "std"),
    "mean wrong shape": (lambda m: m["normalization"]["mean"].pop(), "normalization"),
    "no sha256": (lambda m: m["artifacts"]["dssdn-small.int8.tflite"].pop("sha256"), "no sha256"),
}


@pytest.mark.parametrize("case", sorted(MANIFEST_DAMAGE))
def test_damaged_manifest_is_one_line_in_predict_and_bench(case: str, shared_small_export: Path, tmp_path: Path,
                                                           real_clips) -> None:
    change, needle = MANIFEST_DAMAGE[case]
    exp = damaged(shared_small_export, tmp_path, change)
    model = exp / "dssdn-small.int8.tflite"
    assert_one_line_error(invoke("predict", real_clips[0], "--model", model), needle)
    assert_one_line_error(invoke("bench", "--export", exp, "--runtimes", "litert", "--runs", "2",
                                 "--out", tmp_path / "b"), needle)
    assert not (tmp_path / "b").exists()


def test_predict_runs_only_files_the_manifest_lists(shared_small_export: Path, tmp_path: Path, real_clips) -> None:
    exp = tmp_path / "exp"
    shutil.copytree(shared_small_export, exp)
    shutil.copyfile(exp / "dssdn-small.tflite", exp / "other.tflite")  # a model copied in by hand
    assert_one_line_error(invoke("predict", real_clips[0], "--model", exp / "other.tflite"), "not listed")
    assert_one_line_error(invoke("predict", real_clips[0], "--model", exp), "is a folder")
    assert_one_line_error(invoke("bench", "--export", exp / "manifest.json", "--runs", "2"), "is a file")


# ------------------------------------------------------------------ 5. one bad file in a batch
def test_predict_keeps_going_past_a_bad_file(tmp_path: Path, real_clips) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF....WAVEfmt garbage")
    model = pretrained_path("small")
    res = invoke("predict", real_clips[0], bad, real_clips[1], "--model", model, "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert [("error" in o) for o in out] == [False, True, False] and "bad.wav" in out[1]["error"]
    assert res.stderr.strip().startswith("error:") and "bad.wav" in res.stderr and "Traceback" not in res.output
    plain = invoke("predict", real_clips[0], bad, real_clips[1], "--model", model)
    assert plain.exit_code == 1 and plain.stdout.count("\n") == 2


# ------------------------------------------------------------------------ 7. more tracebacks
def test_bad_metadata_is_one_line(data_root: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.mkdir()
    (wrong / "metadata.csv").write_text("filename,target,fold\n")  # ESC-50-looking header, no label, no rows
    assert_one_line_error(invoke("eval", "--data", wrong), "metadata.csv")
    assert_one_line_error(invoke("export", "--size", "small", "--eval", wrong, "--out", tmp_path / "x"),
                          "metadata.csv")
    assert not (tmp_path / "x").exists()
    header = tmp_path / "header"
    header.mkdir()
    (header / "metadata.csv").write_text((data_root / "metadata.csv").read_text().splitlines()[0] + "\n")
    assert_one_line_error(invoke("eval", "--data", header), "only a header")
    some = tmp_path / "some"  # only some classes: scored on those, by name
    with (data_root / "metadata.csv").open() as fh:
        rows = [r for r in csv.DictReader(fh) if r["fold"] == "5" and int(r["target"]) in (3, 17)]
    esc50_copy(data_root, some, rows, lambda r: data_root / r["filename"])
    res = invoke("eval", "--data", some)
    assert res.exit_code == 0 and "16 clips" in res.stdout, res.output


# --------------------------------------------------------------------------- 8. bounded memory
def test_predict_memory_does_not_grow_with_the_file(tmp_path: Path, real_clips) -> None:
    """numpy/Python allocations while predicting 10 minutes of audio stay a few MB (the whole-file path
    held the audio, its features and every window: > 100 MB). RSS across lengths: benchmarks/predict_memory.py."""
    from dssdn_edge.predict import Predictor

    clip = sf.read(str(real_clips[0]), dtype="float32")[0]
    long = tmp_path / "long.flac"
    with sf.SoundFile(str(long), "w", 16000, 1, "PCM_16") as fh:
        for _ in range(120):  # 10 minutes
            fh.write(clip)
    predictor = Predictor.from_path(pretrained_path("small"))
    tracemalloc.start()
    _, n = predictor.logits(long)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n > 300  # the clip is partly digital silence: those windows are skipped
    assert peak < 40 * 2**20, f"peak {peak / 2**20:.0f} MB"


# ----------------------------------------------------------------------------- 9. info --checkpoint
def test_info_names_a_checkpoint_after_itself(tmp_path: Path) -> None:
    from dssdn_edge.checkpoint import save_checkpoint
    from dssdn_edge.frontend import FrontendConfig, Normalization
    from dssdn_edge.model import build_model, config_for

    ckpt = tmp_path / "mine.safetensors"
    save_checkpoint(ckpt, "dssdn-large", build_model(config_for("large")), config_for("large"), FrontendConfig(),
                    Normalization.identity(FrontendConfig()), [f"c{i}" for i in range(50)],
                    {"metrics": {"test_accuracy": 0.123}})
    res = invoke("info", "--checkpoint", ckpt)
    assert res.exit_code == 0
    assert res.stdout.startswith("dssdn-large:") and "250,000" in res.stdout
    assert "checkpoint" in res.stdout and "12.30%" in res.stdout and "shipped" not in res.stdout
    assert oct(ckpt.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


# ------------------------------------------------------------------------------ 10. messages
def test_messages_name_the_right_flag_and_file(tmp_path: Path, shared_small_export: Path) -> None:
    assert invoke("features", "--emit-c", tmp_path / "c").exit_code == 0
    assert_one_line_error(invoke("features", "--emit-c", tmp_path / "c"), "--force")
    res = invoke("export", "--size", "small", "--eval", tmp_path / "nowhere", "--out", tmp_path / "x")
    assert_one_line_error(res, "nowhere")
    assert "--data" not in res.stderr
    readme = (REPO / "README.md").read_text()
    assert "model_int8.tflite" not in readme


def test_calibration_names_the_files_it_skips(tmp_path: Path, real_clips) -> None:
    calib = tmp_path / "calib"
    calib.mkdir()
    for p in real_clips[:12]:
        shutil.copyfile(p, calib / p.name)
    (calib / "broken.wav").write_bytes(b"not audio at all")
    res = invoke("export", "--size", "small", "--formats", "tflite", "--calib", calib, "--out", tmp_path / "x")
    assert res.exit_code == 0, res.output
    assert "broken.wav" in res.stderr
    manifest = json.loads((tmp_path / "x" / "manifest.json").read_text())
    assert "12 files" in manifest["calibration"]["source"]


# ------------------------------------------------------------------ the table: every command
def _bad_audio(tmp: Path) -> dict[str, Path]:
    files = {
        "empty file": tmp / "empty.wav",
        "not audio": tmp / "text.wav",
        "zero samples": tmp / "zero.wav",
        "nan": tmp / "nan.wav",
        "too short": tmp / "short.wav",
        "silence": tmp / "silence.wav",
        "a folder": tmp / "folder.wav",
        "missing": tmp / "missing.wav",
    }
    files["empty file"].write_bytes(b"")
    files["not audio"].write_text("hello")
    sf.write(str(files["zero samples"]), np.zeros(0, np.float32), 16000)
    sf.write(str(files["nan"]), np.full(16000, np.nan, np.float32), 16000, subtype="FLOAT")
    sf.write(str(files["too short"]), np.ones(100, np.float32) * 0.1, 16000)
    sf.write(str(files["silence"]), np.zeros(32000, np.float32), 16000)
    files["a folder"].mkdir()
    return files


BAD_AUDIO = ["empty file", "not audio", "zero samples", "nan", "too short", "silence", "a folder", "missing"]


@pytest.mark.parametrize("case", BAD_AUDIO)
def test_bad_audio_through_every_audio_command(case: str, tmp_path: Path) -> None:
    path = _bad_audio(tmp_path)[case]
    model = pretrained_path("small")
    assert_one_line_error(invoke("predict", path, "--model", model), path.name)
    assert_one_line_error(invoke("predict", path, "--model", model, "--stream"), path.name)
    if case != "silence":  # a silent file has features
        out = tmp_path / "f.npy"
        assert_one_line_error(invoke("features", path, "--npy", out), path.name)
        assert not out.exists()


BAD_ARGS = [
    ("info", "--checkpoint", "{tmp}/none.safetensors"),
    ("info", "--size", "tiny"),
    ("eval", "--checkpoint", "{tmp}/none.safetensors"),
    ("eval", "--data", "{tmp}/nowhere"),
    ("eval", "--out", "{file}"),
    ("train", "--out", "{file}"),
    ("train", "--resume", "{tmp}"),
    ("train", "--data", "{tmp}/nowhere"),
    ("train", "--train-folds", "x"),
    ("train", "--teacher-logits", "{file}", "--epochs", "1", "--limit-per-class", "1", "--out", "{tmp}/r"),
    ("train", "--init", "{tmp}/none.safetensors"),
    ("export", "--checkpoint", "{tmp}/none.safetensors"),
    ("export", "--formats", "pdf", "--out", "{tmp}/e"),
    ("export", "--calib", "{tmp}/nowhere", "--out", "{tmp}/e"),
    ("export", "--out", "{file}"),
    ("predict", "{file}", "--model", "{tmp}/none.tflite"),
    ("predict", "{file}", "--model", "{file}"),
    ("predict", "{file}", "--model", "{tmp}/m.safetensors", "--hop", "0"),
    ("bench", "--export", "{tmp}/nowhere"),
    ("bench", "--size", "small", "--device", "toaster"),
    ("bench", "--size", "small", "--runs", "0"),
    ("bench", "--export", "{tmp}", "--size", "small"),
    ("features", "{tmp}/none.wav"),
    ("features",),
    ("predict", "{file}", "--model", "{tmp}/m.safetensors", "--stream", "--hop", "nan"),
    ("predict", "{file}", "--model", "{tmp}/m.safetensors", "--top-k", "0"),
    ("train", "--resume", "{tmp}/none"),
    ("train", "--lr", "nan", "--out", "{tmp}/r"),
    ("bench", "--size", "small", "--device", "rpi", "--host", "-oProxyCommand=x"),
    ("bench", "--size", "small", "--threads", "0"),
    ("info", "--checkpoint", "{file}"),
    ("eval", "--data", "{file}"),
]


@pytest.mark.parametrize("args", BAD_ARGS, ids=[" ".join(a) for a in BAD_ARGS])
def test_bad_arguments_through_every_command(args: tuple[str, ...], tmp_path: Path) -> None:
    file = tmp_path / "file.txt"
    file.write_text("not what was asked for")
    before = sorted(p.name for p in tmp_path.iterdir())
    real = [a.format(tmp=tmp_path, file=file) for a in args]
    res = invoke(*real, env={"DSSDN_PROGRESS": "0"})
    assert_one_line_error(res)
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing half-written


def test_unreachable_device_is_one_line(shared_small_export: Path, tmp_path: Path) -> None:
    config = tmp_path / "ssh_config"
    config.write_text("")  # never the user's ~/.ssh/config
    res = invoke("bench", "--export", shared_small_export, "--device", "rpi", "--host", "nobody@127.0.0.1:1",
                 "--runs", "1", "--ssh-config", config, "--out", tmp_path / "b")
    assert_one_line_error(res, "127.0.0.1")
    assert not (tmp_path / "b").exists()


# =============================================================================== issue 20: second pass
# Every probe of the second hostile pass is a row here: exit code, one ``error:`` line, no traceback, and
# nothing lost, read outside the named folder, answered wrongly or left hanging.
def tiny_checkpoint(tmp_path: Path, labels: list[str] | None = None) -> Path:
    """A 3-class dssdn-small checkpoint (random weights): enough to load, validate and predict."""
    from dssdn_edge.checkpoint import save_checkpoint
    from dssdn_edge.frontend import FrontendConfig, Normalization
    from dssdn_edge.model import build_model, config_for

    cfg = config_for("small", n_classes=3)
    path = tmp_path / "ckpt" / "dssdn-small.safetensors"
    save_checkpoint(path, "dssdn-small", build_model(cfg), cfg, FrontendConfig(),
                    Normalization.identity(FrontendConfig()), labels or ["cat", "dog", "owl"])
    return path


def edit_sidecar(ckpt: Path, change) -> Path:
    side = ckpt.with_suffix(".json")
    data = json.loads(side.read_text())
    change(data)
    side.write_text(json.dumps(data))  # the weights are unchanged, so their sha256 still matches
    return ckpt


SIDECAR_DAMAGE = {
    "2 labels for 3 outputs": (lambda d: d["labels"].pop(), "2 labels for a model with 3 outputs"),
    "4 labels for 3 outputs": (lambda d: d["labels"].append("eel"), "4 labels for a model with 3 outputs"),
    "duplicate labels": (lambda d: d["labels"].__setitem__(1, "cat"), "appears twice"),
    "newline in a label": (lambda d: d["labels"].__setitem__(0, "cat\nforged: dog 99.9 %"), "control"),
    "NaN normalisation": (lambda d: d["normalization"]["mean"][0].__setitem__(0, float("nan")), "finite"),
    "std zero": (lambda d: d["normalization"]["std"][1].__setitem__(3, 0.0), "std"),
    "widths [100000]*5": (lambda d: d["model_config"].__setitem__("widths", [100000] * 5), "widths"),
    "widths off the weights": (lambda d: d["model_config"].__setitem__("widths", [24, 32, 48, 48, 72]),
                               "weights do not fit"),
    "unknown arch": (lambda d: d["model_config"].__setitem__("arch", "transformer"), "unknown architecture"),
}


@pytest.mark.parametrize("case", sorted(SIDECAR_DAMAGE))
def test_checkpoint_sidecar_is_validated_before_any_model_is_built(case: str, tmp_path: Path, real_clips) -> None:
    change, needle = SIDECAR_DAMAGE[case]
    ckpt = edit_sidecar(tiny_checkpoint(tmp_path), change)
    tracemalloc.start()
    res = invoke("predict", real_clips[0], "--model", ckpt)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert_one_line_error(res, needle, ckpt.stem)
    assert peak < 200 * 2**20  # [100000]*5 would have asked for 40 GB
    assert_one_line_error(invoke("info", "--checkpoint", ckpt), needle)
    out = tmp_path / "exp"
    assert_one_line_error(invoke("export", "--checkpoint", ckpt, "--out", out), needle)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".exp")]


def test_manifest_label_with_a_newline_cannot_forge_a_line(shared_small_export: Path, tmp_path: Path,
                                                            real_clips) -> None:
    exp = damaged(shared_small_export, tmp_path, lambda m: m["labels"].__setitem__(0, "dog\nforged 99 %"))
    assert_one_line_error(invoke("predict", real_clips[0], "--model", exp / "dssdn-small.int8.tflite"), "control")
    exp2 = tmp_path / "dup"
    shutil.copytree(shared_small_export, exp2)
    m = json.loads((exp2 / "manifest.json").read_text())
    m["labels"][1] = m["labels"][0]
    (exp2 / "manifest.json").write_text(json.dumps(m))
    assert_one_line_error(invoke("predict", real_clips[0], "--model", exp2 / "dssdn-small.int8.tflite"),
                          "appears twice")


def test_safe_label_escapes_control_characters() -> None:
    from dssdn_edge.validate import safe_label

    assert safe_label("dog") == "dog" and "\n" not in safe_label("a\nb") and safe_label("a\nb") == "a\\nb"


@pytest.mark.parametrize("rel", ["../../other/x.tflite", "/etc/passwd", "mcu/../../x.tflite"])
def test_manifest_paths_are_confined_to_the_export(rel: str, shared_small_export: Path, tmp_path: Path) -> None:
    from dssdn_edge.checkpoint import sha256_file

    other = tmp_path / "other"
    other.mkdir()
    (other / "x.tflite").write_bytes((shared_small_export / "dssdn-small.tflite").read_bytes())
    target = Path("/etc/passwd") if rel.startswith("/") else other / "x.tflite"

    def add(m) -> None:
        m["artifacts"][rel] = {"sha256": sha256_file(target), "bytes": target.stat().st_size}

    exp = damaged(shared_small_export, tmp_path / "a" / "b", add)
    res = invoke("bench", "--export", exp, "--runtimes", "litert", "--runs", "2", "--out", tmp_path / "bench")
    assert_one_line_error(res, rel)
    assert not (tmp_path / "bench").exists()


def test_a_symlink_out_of_the_export_is_refused(shared_small_export: Path, tmp_path: Path) -> None:
    from dssdn_edge.bench.runner import RunnerError
    from dssdn_edge.bench.runner import load_manifest as runner_load

    exp = tmp_path / "exp"
    shutil.copytree(shared_small_export, exp)
    secret = tmp_path / "secret.tflite"
    (exp / "dssdn-small.tflite").rename(secret)
    (exp / "dssdn-small.tflite").symlink_to(secret)
    with pytest.raises(RunnerError, match="leads outside"):
        runner_load(str(exp), verify=True)
    assert_one_line_error(invoke("bench", "--export", exp, "--runtimes", "litert", "--runs", "2"), "outside")


def test_caches_live_in_the_users_cache_folder(tmp_path: Path, monkeypatch) -> None:
    import dssdn_edge
    from dssdn_edge.device.userland import default_cache
    from dssdn_edge.paths import cache_dir

    monkeypatch.delenv("DSSDN_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "dssdn-edge" == default_cache()
    package = Path(dssdn_edge.__file__).resolve().parents[1]
    assert package not in cache_dir().resolve().parents
    monkeypatch.setenv("DSSDN_CACHE", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine"


def test_the_feature_cache_is_not_fooled_by_cp_p(tmp_path: Path) -> None:
    """Other audio of the same size with the old mtime kept (``cp -p``) is a cache miss."""
    from dssdn_edge.data import Clip, clip_features
    from dssdn_edge.frontend import Frontend

    rng = np.random.default_rng(0)
    clip = tmp_path / "a.wav"
    sf.write(str(clip), rng.standard_normal(16000).astype(np.float32) * 0.1, 16000, subtype="PCM_16")
    first = np.array(clip_features([Clip(clip, 0, "x")], Frontend(), tmp_path / "cache").frames)
    st = clip.stat()
    other = tmp_path / "b.wav"
    sf.write(str(other), np.sin(np.arange(16000) * 0.3).astype(np.float32) * 0.5, 16000, subtype="PCM_16")
    assert other.stat().st_size == st.st_size
    shutil.copyfile(other, clip)  # what cp -p does: new bytes, then the old times put back
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = np.array(clip_features([Clip(clip, 0, "x")], Frontend(), tmp_path / "cache").frames)
    assert not np.allclose(first, again)


def test_ssh_never_reads_a_host_as_an_option(tmp_path: Path, shared_small_export: Path) -> None:
    from dssdn_edge.bench.remote import Ssh, Target

    for bad in ("-oProxyCommand=touch /tmp/pwned", "-p22", "-x@host"):
        res = invoke("bench", "--export", shared_small_export, "--device", "rpi", "--host", bad, "--runs", "1")
        assert_one_line_error(res, "may not begin with '-'")
    assert_one_line_error(invoke("bench", "--export", shared_small_export, "--device", "rpi", "--host",
                                 "pi@host", "--remote-python", "-c", "--runs", "1"), "--remote-python")
    cmd = Ssh(Target.parse("pi@host:2222")).ssh("true")
    assert cmd[cmd.index("--") + 1] == "pi@host"
    scp = Ssh(Target.parse("pi@host")).scp("a", "pi@host:/tmp/")
    assert scp[-3:] == ["--", "a", "pi@host:/tmp/"]


# ---------------------------------------------------------------------------------- lost work
def test_a_second_training_into_a_busy_folder_stops_naming_the_holder(tmp_path: Path) -> None:
    from dssdn_edge.runlock import exclusive

    out = tmp_path / "run"
    with exclusive(out, "training"):
        res = invoke("train", "--data", tmp_path / "nowhere", "--out", out)
        assert_one_line_error(res, "another training", f"pid {os.getpid()}")
        res = invoke("train", "--resume", out)
        assert_one_line_error(res, "another training")
    assert not (tmp_path / ".run.lock").exists()


def test_resume_of_a_damaged_run_folder_is_one_line(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "state.pt").write_bytes(b"")
    (run / "train_config.json").write_text('{"config": {"model": "dssdn-sm')
    assert_one_line_error(invoke("train", "--resume", run), "state.pt", "empty")
    (run / "state.pt").write_bytes(b"PK\x03\x04 not really a torch file")
    assert_one_line_error(invoke("train", "--resume", run), "train_config.json", "truncated")
    (run / "train_config.json").write_text('{"config": {"model": "dssdn-small"}, "data": {"root": "/nowhere"}}')
    assert_one_line_error(invoke("train", "--resume", run), "nowhere")


def test_load_state_of_an_empty_file_names_it(tmp_path: Path) -> None:
    from dssdn_edge.errors import DssdnError
    from dssdn_edge.train import first_line

    assert first_line(EOFError()) == "EOFError"  # the handler itself used to raise on an empty message
    with pytest.raises(DssdnError):
        raise DssdnError(first_line(ValueError("")))


# ------------------------------------------------------------------------------------ datasets
def wav(path: Path, seconds: float = 1.0, seed: int = 0, silent: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.zeros(int(16000 * seconds), np.float32) if silent else \
        np.random.default_rng(seed).standard_normal(int(16000 * seconds)).astype(np.float32) * 0.1
    sf.write(str(path), x, 16000, subtype="PCM_16")
    return path


def csv_dataset(tmp_path: Path, rows: list[str], files: int = 6) -> Path:
    for i in range(files):
        wav(tmp_path / f"{i}.wav", seed=i)
    path = tmp_path / "data.csv"
    path.write_text("filename,label\n" + "\n".join(rows) + "\n")
    return path


def test_duplicate_rows_are_merged_with_a_count_and_conflicts_are_errors(tmp_path: Path) -> None:
    from dssdn_edge.errors import DssdnError
    from dssdn_edge.userdata import load_user_data

    rows = ["0.wav,a", "1.wav,a", "2.wav,a", "3.wav,b", "4.wav,b", "5.wav,b"]
    said: list[str] = []
    ds = load_user_data(csv_dataset(tmp_path, rows + ["0.wav,a", "./1.wav,a"]), warn=said.append)
    assert len(ds.clips) == 6 and any("2 duplicate row(s)" in s for s in said)
    with pytest.raises(DssdnError, match=r"0.wav is listed under two labels \(lines 2 and 8"):
        load_user_data(csv_dataset(tmp_path, rows + ["0.wav,b"]))
    res = invoke("train", "--data", tmp_path / "data.csv", "--out", tmp_path / "r")
    assert_one_line_error(res, "two labels")
    split = tmp_path / "split.csv"
    split.write_text("filename,label,split\n0.wav,a,train\n1.wav,a,test\n0.wav,a,test\n3.wav,b,train\n4.wav,b,test\n")
    assert_one_line_error(invoke("eval", "--data", split), "two splits")


@pytest.mark.parametrize("name,needle", [("../../etc/passwd", "leads outside"), ("/etc/passwd", "absolute"),
                                         ("/dev/zero", "absolute")])
def test_csv_names_are_confined_to_its_folder(name: str, needle: str, tmp_path: Path) -> None:
    data = csv_dataset(tmp_path / "d", ["0.wav,a", "1.wav,a", "3.wav,b", f"{name},b"])
    assert_one_line_error(invoke("eval", "--data", data), needle)


def test_devices_fifos_and_folders_in_a_csv_name_the_real_cause(tmp_path: Path) -> None:
    d = tmp_path / "d"
    data = csv_dataset(d, ["0.wav,a", "1.wav,a", "3.wav,b", "zero,b"])
    (d / "zero").symlink_to("/dev/zero")
    assert_one_line_error(invoke("eval", "--data", data), "character device", "line 5")
    (d / "zero").unlink()
    os.mkfifo(d / "zero")
    assert_one_line_error(invoke("eval", "--data", data), "named pipe")
    (d / "zero").unlink()
    (d / "zero").mkdir()
    assert_one_line_error(invoke("eval", "--data", data), "is a folder")


def test_class_names_with_control_characters_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "folders"
    for label in ("ok", "bad\nname"):
        for i in range(2):
            wav(root / label / f"{i}.wav", seed=i)
    assert_one_line_error(invoke("train", "--data", root, "--out", tmp_path / "r"), "control")
    assert not (tmp_path / "r").exists()


def test_empty_and_skipped_classes_and_files_are_told(tmp_path: Path) -> None:
    from dssdn_edge.userdata import load_user_data

    root = tmp_path / "folders"
    for label in ("a", "b", "c"):
        for i in range(3):
            wav(root / label / f"{i}.wav", seed=i)
    (root / "empty").mkdir()
    (root / "c" / "broken.wav").write_bytes(b"RIFF nonsense")
    said: list[str] = []
    load_user_data(root, skip_bad=True, warn=said.append)
    assert any("empty" in s and "no audio files" in s for s in said), said
    assert any("skipped 1 unreadable" in s and "broken.wav" in s for s in said), said


def test_all_silent_classes_are_warned(tmp_path: Path) -> None:
    from dssdn_edge.data import Clip, clip_features, silent_classes
    from dssdn_edge.frontend import Frontend

    clips = [Clip(wav(tmp_path / "s0.wav", silent=True), 0, "hush"), Clip(wav(tmp_path / "s1.wav", silent=True), 0,
             "hush"), Clip(wav(tmp_path / "n0.wav"), 1, "noise")]
    feats = clip_features(clips, Frontend(), tmp_path / "cache")
    assert silent_classes(feats, ["hush", "noise"], 51) == {"hush": 2}


def test_teacher_logits_of_random_bytes_say_what_they_are(tmp_path: Path) -> None:
    from dssdn_edge.data import Clip, ClipFeatures
    from dssdn_edge.errors import DssdnError
    from dssdn_edge.frontend import FrontendConfig
    from dssdn_edge.teacher import load_teacher_file

    junk = tmp_path / "t.npz"
    junk.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DssdnError) as info:
        load_teacher_file(junk, [Clip(junk, 0, "a")], ClipFeatures(*[np.zeros(0)] * 5), ["a", "b"],
                          FrontendConfig(), tmp_path, 10)
    assert "not a .npz" in str(info.value) and "pickle" not in str(info.value)


# --------------------------------------------------------------------------------- hangs, memory
@pytest.mark.parametrize("kind", ["fifo", "device", "folder", "bad mp3"])
def test_non_regular_and_undecodable_files_are_one_line_and_never_hang(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "x.wav"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path = Path("/dev/zero")
    elif kind == "folder":
        path.mkdir()
    else:
        path = tmp_path / "x.mp3"
        path.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x00" + np.random.default_rng(1).bytes(5000))
    needle = {"fifo": "named pipe", "device": "character device", "folder": "is a folder",
              "bad mp3": "unreadable or corrupt audio"}[kind]
    model = pretrained_path("small")
    for args in (["predict", path, "--model", model], ["predict", path, "--model", model, "--stream"],
                 ["features", path, "--npy", tmp_path / "f.npy"]):
        res = invoke(*args)
        assert_one_line_error(res, needle)
        assert "does not exist" not in res.stderr
    if kind == "fifo":  # in a child with a timeout, so that a regression fails instead of hanging the suite
        proc = subprocess.run([sys.executable, "-m", "dssdn_edge.cli", "features", str(path)], capture_output=True,
                              text=True, timeout=120, env={**os.environ, "DSSDN_PROGRESS": "0"})
        assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and needle in proc.stderr
    assert not (tmp_path / "f.npy").exists()
    if kind != "device":
        fifo_model = tmp_path / "m.tflite"
        os.mkfifo(fifo_model)
        assert_one_line_error(invoke("predict", wav(tmp_path / "ok.wav"), "--model", fifo_model), "named pipe")


def test_features_streams_to_its_npy_in_bounded_memory(tmp_path: Path, real_clips) -> None:
    from dssdn_edge.features import features_for_file, stream_features
    from dssdn_edge.frontend import Frontend

    clip = sf.read(str(real_clips[0]), dtype="float32")[0]
    long = tmp_path / "long.flac"
    with sf.SoundFile(str(long), "w", 16000, 1, "PCM_16") as fh:
        for _ in range(60):  # 5 minutes: 15,000 frames, 15 MB of features
            fh.write(clip)
    tracemalloc.start()
    stats, _ = stream_features(long, Frontend(), npy=tmp_path / "f.npy")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert stats.frames == 15001 and peak < 12 * 2**20, f"peak {peak / 2**20:.0f} MB"
    short = tmp_path / "short.npy"
    assert invoke("features", real_clips[0], "--npy", short).exit_code == 0
    np.testing.assert_array_equal(np.load(short), features_for_file(real_clips[0], Frontend()))


# ----------------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "1e9"])
def test_hop_must_be_a_finite_number_in_range(value: str, tmp_path: Path) -> None:
    res = invoke("predict", wav(tmp_path / "a.wav"), "--model", pretrained_path("small"), "--stream", "--hop", value)
    assert_one_line_error(res, "--hop")


@pytest.mark.parametrize("args", [("--top-k", "0"), ("--top-k", "1001"), ("--top-k", "nan")])
def test_top_k_is_an_integer_in_range(args: tuple[str, str], tmp_path: Path) -> None:
    assert_one_line_error(invoke("predict", wav(tmp_path / "a.wav"), "--model", pretrained_path("small"), *args),
                          "--top-k")


def test_top_k_beyond_the_labels_prints_every_label_once(tmp_path: Path, real_clips) -> None:
    res = invoke("predict", real_clips[0], "--model", tiny_checkpoint(tmp_path), "--top-k", "40")
    assert res.exit_code == 0, res.output
    assert sorted(p.split()[0] for p in res.stdout.split(": ", 1)[1].split(", ")) == ["cat", "dog", "owl"]


@pytest.mark.parametrize("option,value", [("--lr", "nan"), ("--gain-db", "inf"), ("--kd-temperature", "nan"),
                                          ("--mixup", "-inf")])
def test_float_options_are_finite(option: str, value: str, tmp_path: Path) -> None:
    assert_one_line_error(invoke("train", option, value, "--out", tmp_path / "r"), option)
    assert not (tmp_path / "r").exists()


# ---------------------------------------------------------------------------------- messages
def test_info_size_contradicting_the_checkpoint_is_refused(tmp_path: Path) -> None:
    ckpt = tiny_checkpoint(tmp_path)
    assert_one_line_error(invoke("info", "--size", "middle", "--checkpoint", ckpt), "not a dssdn-middle")
    assert invoke("info", "--size", "small", "--checkpoint", ckpt).exit_code == 0


def test_stream_on_digital_silence_is_rejected_like_predict(tmp_path: Path) -> None:
    silence = wav(tmp_path / "silence.wav", seconds=3, silent=True)
    model = pretrained_path("small")
    for extra in ((), ("--stream",)):
        assert_one_line_error(invoke("predict", silence, "--model", model, *extra), "digital silence")
    mixed = tmp_path / "mixed.wav"
    x = np.zeros(16000 * 6, np.float32)
    x[16000 * 4 :] = np.random.default_rng(0).standard_normal(16000 * 2).astype(np.float32) * 0.1
    sf.write(str(mixed), x, 16000)
    res = invoke("predict", mixed, "--model", model, "--stream", "--json")
    starts = [json.loads(line)["start_s"] for line in res.stdout.splitlines()]
    assert res.exit_code == 0 and starts and min(starts) >= 2.9  # no label for the silent first 3 s


def test_export_says_when_the_checkpoints_training_data_is_not_there(tmp_path: Path) -> None:
    ckpt = edit_sidecar(tiny_checkpoint(tmp_path),
                        lambda d: d.__setitem__("data", {"root": "runs/../mydata", "kind": "folder"}))
    res = invoke("export", "--checkpoint", ckpt, "--formats", "pdf", "--out", tmp_path / "e")
    assert res.exit_code == 1
    assert "warning: runs/../mydata: the data this checkpoint was trained on is not there" in res.stderr
    assert "--eval" in res.stderr and "Traceback" not in res.output
