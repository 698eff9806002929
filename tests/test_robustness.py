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
    if case != "silence":  # a live stream classifies silence like any sound; a silent file has features
        assert_one_line_error(invoke("predict", path, "--model", model, "--stream"), path.name)
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
