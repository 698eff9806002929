"""Reading labelled audio in the layouts people already have, into a ``Dataset``.

* ESC-50: a folder with its ``metadata.csv`` (filename, target, fold ...). Splits come from the folds:
  1–3 train, 4 val, 5 test by default (``Dataset.with_folds`` changes that).
* Class folders: ``ROOT/<label>/<file>`` (Keras ``audio_dataset_from_directory`` and image-folder style);
  files may sit in sub-folders of a class folder.
* A CSV: ``filename,label`` with optional ``split`` (train/val/test), ``fold`` (the highest fold is the test
  set, the next one val, the rest train) and ``group`` (clips of one source recording, kept in one split).
  File names are relative to the CSV's folder.

Without a split or fold, clips are split per class (stratified) with a seeded shuffle, 80/10/10 by
default, whole groups at a time. Files whose extension is not audio are skipped and counted; a file with
an audio extension that cannot be read is an error naming it, unless ``skip_bad`` (then it is skipped and
counted).
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf

from .audio import check_audio_file, decode_problem, quiet_decoder
from .errors import DssdnError
from .labels import safe_label
from .paths import file_problem, lexically_confined

REPO_ROOT = Path(__file__).resolve().parents[1]
SPLITS = ("train", "val", "test")
AUDIO_EXTENSIONS = frozenset(
    {".wav", ".wave", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".au", ".snd", ".w64", ".caf",
     ".rf64"}
)
CSV_COLUMNS = {"filename", "label", "split", "fold", "group"}
MAX_CLASSES = 1000
MIN_CLIPS_PER_CLASS = 2
ESC50_LICENCE = (
    "ESC-50 (K. J. Piczak, ACM MM 2015), 16 kHz copy: CC BY-NC 3.0 as a whole, ESC-10 subset CC BY 3.0"
)


def default_data_root() -> Path:
    """``$DSSDN_DATA`` or ../shared/data/esc50_16k beside the checkout."""
    env = os.environ.get("DSSDN_DATA")
    return Path(env) if env else REPO_ROOT.parent / "shared" / "data" / "esc50_16k"


@dataclass(frozen=True)
class Clip:
    path: Path
    target: int
    label: str
    split: str = "train"  # train / val / test
    fold: int | None = None
    group: str | None = None  # clips of one source recording share a group (and so a split)


@dataclass(frozen=True)
class Dataset:
    """Clips with labels and a train / val / test assignment; ``labels[target]`` names a class."""

    root: Path
    clips: tuple[Clip, ...]
    labels: tuple[str, ...]
    kind: str = "esc50"  # esc50 | folder | csv
    licence: str | None = None
    description: str = ""
    load_args: tuple[tuple[str, object], ...] = ()  # how to load it again (split fractions, seed ...)

    def reload_spec(self) -> dict:
        """What a checkpoint records so that export can find the same data and the same split."""
        return {"root": str(Path(self.root).resolve()), "kind": self.kind, **dict(self.load_args)}

    @classmethod
    def load(cls, root: str | Path | None = None, **kwargs) -> Dataset:
        """ESC-50 (a folder with its metadata.csv) or a user's data (class folders, or a CSV).

        Keyword arguments go to the user-data loader (``split``, ``seed``, ``skip_bad`` ...)."""
        root = Path(root) if root else default_data_root()
        if is_esc50(root):
            return load_esc50(root)
        if root == default_data_root() and not root.exists():
            raise DssdnError(f"{root}: ESC-50 not found (set DSSDN_DATA or pass --data)")
        return load_user_data(root, **kwargs)

    @classmethod
    def reload(cls, spec: dict) -> Dataset:
        """The dataset a ``reload_spec`` describes, with the same split."""
        args = {k: (tuple(v) if isinstance(v, list) else v) for k, v in spec.items() if k in ("split", "seed",
                                                                                               "skip_bad")}
        return cls.load(spec["root"], **args)

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def with_folds(self, train: tuple[int, ...], val: int | None, test: int | None) -> Dataset:
        """Reassign splits from folds (ESC-50 protocol): e.g. train (1, 2, 3), val 4, test 5."""
        def which(c: Clip) -> str:
            if c.fold in train:
                return "train"
            return "val" if c.fold == val else "test" if c.fold == test else "unused"

        if any(c.fold is None for c in self.clips):
            raise DssdnError(f"{self.root}: this dataset has no folds")
        parts = [f"folds {', '.join(map(str, train))} train"]
        parts += [f"fold {val} val"] if val is not None else []
        parts += [f"fold {test} test"] if test is not None else []
        name = self.description.split(":")[0] if self.description else str(self.root)
        return replace(self, clips=tuple(replace(c, split=which(c)) for c in self.clips),
                       description=f"{name}: {', '.join(parts)}")

    def subset(self, limit_per_class: int | None) -> Dataset:
        """At most ``limit_per_class`` clips of each class in each split (tests, quick runs)."""
        if limit_per_class is None:
            return self
        seen: dict[tuple[str, int], int] = {}
        keep = []
        for c in self.clips:
            key = (c.split, c.target)
            if seen.get(key, 0) < limit_per_class:
                seen[key] = seen.get(key, 0) + 1
                keep.append(c)
        return replace(self, clips=tuple(keep))

    def summary(self) -> str:
        counts = {s: len(self.split(s)) for s in SPLITS}
        parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        return f"{self.root}: {len(self.labels)} classes, {len(self.clips)} clips ({parts})"


@dataclass
class LoadReport:
    """What was left out while reading a dataset, so a summary can say it."""

    skipped_not_audio: list[Path] = field(default_factory=list)
    skipped_bad: list[tuple[Path, str]] = field(default_factory=list)
    empty_classes: list[Path] = field(default_factory=list)


def _warn_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ------------------------------------------------------------------------------------------ ESC-50
def is_esc50(root: Path) -> bool:
    meta = root / "metadata.csv" if root.is_dir() else root
    if meta.name != "metadata.csv" or not meta.is_file():
        return False
    with meta.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh), [])
    return {"filename", "target", "fold"} <= set(header)


def load_esc50(root: Path) -> Dataset:
    root = root if root.is_dir() else root.parent
    meta = root / "metadata.csv"
    with meta.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise DssdnError(f"{meta}: no clips (only a header)")
    need = {"filename", "target", "fold", "label"}
    missing = need - set(rows[0])
    if missing:
        raise DssdnError(f"{meta}: missing columns {', '.join(sorted(missing))} (ESC-50 layout)")
    try:
        parsed = [(r["filename"], int(r["target"]), r["label"], int(r["fold"])) for r in rows]
    except (TypeError, ValueError) as exc:
        raise DssdnError(f"{meta}: bad target or fold value ({exc})") from None
    names: dict[int, str] = {}
    for _, t, lab, _ in parsed:
        if names.setdefault(t, lab) != lab:
            raise DssdnError(f"{meta}: target {t} is labelled both {names[t]!r} and {lab!r}")
    order = sorted(names)  # a metadata.csv with only some classes keeps their order
    index = {t: i for i, t in enumerate(order)}
    split = {1: "train", 2: "train", 3: "train", 4: "val", 5: "test"}
    bad_label = next((lab for _, _, lab, _ in parsed if not lab.isprintable()), None)
    if bad_label is not None:
        raise DssdnError(f"{meta}: class name {safe_label(bad_label)!r} holds a control character")
    seen: dict[str, int] = {}
    for i, (f, *_rest) in enumerate(parsed, start=2):
        if f in seen:
            raise DssdnError(f"{meta}: {f} is listed twice (lines {seen[f]} and {i}); the same audio would be "
                             "scored in two places")
        seen[f] = i
    clips = tuple(
        Clip(lexically_confined(root, f, meta), index[t], lab, split.get(fold, "unused"), fold, None)
        for f, t, lab, fold in parsed
    )
    missing_files = [c.path for c in clips if not c.path.exists()]
    if missing_files:
        raise DssdnError(f"{missing_files[0]}: listed in {meta} but not found ({len(missing_files)} missing)")
    for c in clips:
        check_audio_file(c.path)
    return Dataset(root, clips, tuple(names[t] for t in order), "esc50", ESC50_LICENCE,
                   "ESC-50 (16 kHz): folds 1-3 train, fold 4 val, fold 5 test")


# --------------------------------------------------------------------------------------- user data
def load_user_data(
    root: Path,
    split: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    skip_bad: bool = False,
    report: LoadReport | None = None,
    warn: Callable[[str], None] | None = None,
) -> Dataset:
    """Class folders or a CSV; see the module docstring for the layouts and rules. What is left out (empty
    class folders, files skipped with ``skip_bad``, agreeing duplicate rows) is told to ``warn`` (default:
    a ``warning:`` line on stderr)."""
    root = Path(root)
    report = report if report is not None else LoadReport()
    warn = warn or _warn_stderr
    if not root.exists():
        raise DssdnError(f"{root}: no such file or folder")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DssdnError(f"{root}: expected a folder of class folders or a .csv file")
        rows = dedupe_rows(root, read_csv(root), warn)
        base = root.parent
    else:
        rows = scan_class_folders(root, report)
        base = root
        for folder in report.empty_classes:
            warn(f"{folder}: class folder has no audio files; class left out")
        if len(report.empty_classes) > 1:
            warn(f"{root}: {len(report.empty_classes)} empty class folders left out")
    rows = [r for r in rows if usable(r["path"], report, skip_bad)]
    if report.skipped_bad:
        shown = "; ".join(f"{p} ({why})" for p, why in report.skipped_bad[:3])
        more = f"; and {len(report.skipped_bad) - 3} more" if len(report.skipped_bad) > 3 else ""
        warn(f"{root}: skipped {len(report.skipped_bad)} unreadable audio file(s) (--skip-bad): {shown}{more}")
    labels = sorted({r["label"] for r in rows})
    check_classes(root, rows, labels)
    target = {lab: i for i, lab in enumerate(labels)}
    if any(r.get("split") for r in rows):
        splits = [normalise_split(r["split"], root) for r in rows]
    elif any(r.get("fold") for r in rows):
        splits = splits_from_folds(root, [r.get("fold", "") for r in rows])
    else:
        splits = stratified_split(rows, split, seed)
    clips = tuple(
        Clip(r["path"], target[r["label"]], r["label"], s, None, r.get("group") or None)
        for r, s in zip(rows, splits, strict=True)
    )
    if not any(c.split == "train" for c in clips):
        raise DssdnError(f"{root}: no training clips after the split")
    kind = "csv" if root.is_file() else "folder"
    args = (("split", list(split)), ("seed", seed), ("skip_bad", skip_bad))
    return Dataset(base if kind == "folder" else root, clips, tuple(labels), kind, None,
                   f"{kind} dataset {root}", args)


def scan_class_folders(root: Path, report: LoadReport) -> list[dict]:
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        if not files:
            raise DssdnError(f"{root}: empty folder (expected one sub-folder of audio files per class)")
        raise DssdnError(f"{root}: no class sub-folders (put each class's files in ROOT/<label>/)")
    rows = []
    for folder in classes:
        before = len(rows)
        for path in sorted(folder.rglob("*")):
            if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
                continue
            if path.suffix.lower() not in AUDIO_EXTENSIONS:
                report.skipped_not_audio.append(path)
                continue
            rows.append({"path": path, "label": folder.name})
        if len(rows) == before:
            report.empty_classes.append(folder)
    if not rows:
        raise DssdnError(f"{root}: no audio files in its class folders (extensions: wav, flac, ogg, mp3 ...)")
    return rows


def read_csv(path: Path) -> list[dict]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = [h.strip() for h in (reader.fieldnames or [])]
            raw = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DssdnError(f"{path}: unreadable CSV ({exc})") from None
    if not header:
        raise DssdnError(f"{path}: empty CSV (expected a header: filename,label[,split|fold][,group])")
    unknown = set(header) - CSV_COLUMNS
    if unknown:
        raise DssdnError(f"{path}: unknown column(s) {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(CSV_COLUMNS))})")
    if not {"filename", "label"} <= set(header):
        raise DssdnError(f"{path}: needs the columns filename and label")
    if not raw:
        raise DssdnError(f"{path}: no rows (only a header)")
    rows, missing = [], []
    for i, r in enumerate(raw, start=2):
        r = {k.strip(): (v or "").strip() for k, v in r.items() if k is not None}
        if not r["filename"] or not r["label"]:
            raise DssdnError(f"{path}: line {i}: empty filename or label")
        file = lexically_confined(path.parent, r["filename"], f"{path}: line {i}")
        if not file.exists() and not file.is_symlink():
            missing.append(file)
        rows.append({**r, "path": file, "line": i})
    if missing:
        raise DssdnError(f"{missing[0]}: listed in {path} but not found ({len(missing)} missing)")
    for r in rows:
        why = file_problem(r["path"])
        if why is not None:  # a FIFO, a device (/dev/zero) or a folder: say what it is
            raise DssdnError(f"{r['path']}: listed in {path} (line {r['line']}) but "
                             f"{why.replace('not a regular file', 'not an audio file')}")
    return rows


def dedupe_rows(csv_path: Path, rows: list[dict], warn: Callable[[str], None]) -> list[dict]:
    """One row per audio file. Rows naming the same file (after resolving ``./`` and links) that agree on
    label, split, fold and group are merged and counted; rows that disagree are an error naming both
    lines, because one recording in two classes or two splits leaks test audio into training."""
    first: dict[Path, dict] = {}
    out, dropped = [], 0
    for r in rows:
        key = r["path"].resolve()
        seen = first.get(key)
        if seen is None:
            first[key] = r
            out.append(r)
            continue
        same = all(seen.get(k, "") == r.get(k, "") for k in ("label", "split", "fold", "group"))
        if not same:
            what = "two labels" if seen["label"] != r["label"] else "two splits/folds/groups"
            raise DssdnError(f"{csv_path}: {r['filename']} is listed under {what} (lines {seen['line']} and "
                             f"{r['line']}: {safe_label(seen['label'])!r} / {safe_label(r['label'])!r}); "
                             "the same audio would be trained on and scored")
        dropped += 1
    if dropped:
        warn(f"{csv_path}: {dropped} duplicate row(s) (same file, same label and split) counted once")
    return out


def usable(path: Path, report: LoadReport, skip_bad: bool) -> bool:
    """Can soundfile read the header of this audio file? (Content errors surface when features are made.)"""
    try:
        check_audio_file(path)
        with quiet_decoder():
            info = sf.info(str(path))
        if info.frames == 0:
            raise ValueError("empty audio (0 samples)")
    except DssdnError as exc:  # not a regular file: that is the whole message
        if not skip_bad:
            raise
        report.skipped_bad.append((path, str(exc).removeprefix(f"{path}: ")))
        return False
    except Exception as exc:  # soundfile raises several types for a bad file
        reason = decode_problem(exc) if isinstance(exc, sf.LibsndfileError) else (
            str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
        if not skip_bad:
            raise DssdnError(f"{path}: unreadable audio ({reason}); fix or remove it, or pass --skip-bad") from None
        report.skipped_bad.append((path, reason))
        return False
    return True


def check_classes(root: Path, rows: list[dict], labels: list[str]) -> None:
    if not labels:
        raise DssdnError(f"{root}: no usable audio clips")
    bad = next((lab for lab in labels if not lab.isprintable()), None)
    if bad is not None:  # a newline in a class name would forge lines in every later output
        raise DssdnError(f"{root}: class name {safe_label(bad)!r} holds a control or non-printable character; "
                         "rename it")
    if len(labels) < 2:
        raise DssdnError(f"{root}: only one class ({labels[0]!r}); a classifier needs at least 2")
    if len(labels) > MAX_CLASSES:
        raise DssdnError(f"{root}: {len(labels)} classes; at most {MAX_CLASSES} are supported")
    counts = {lab: 0 for lab in labels}
    for r in rows:
        counts[r["label"]] += 1
    few = [lab for lab, n in counts.items() if n < MIN_CLIPS_PER_CLASS]
    if few:
        where = root / few[0] if root.is_dir() else root
        raise DssdnError(f"{where}: class {few[0]!r} has {counts[few[0]]} usable clip(s), need at least "
                         f"{MIN_CLIPS_PER_CLASS}" + (f" ({len(few)} classes too small)" if len(few) > 1 else ""))


def normalise_split(value: str, root: Path) -> str:
    v = value.strip().lower()
    aliases = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
               "dev": "val", "test": "test", "testing": "test", "eval": "test"}
    if v not in aliases:
        raise DssdnError(f"{root}: unknown split {value!r} (use train, val or test)")
    return aliases[v]


def splits_from_folds(root: Path, folds: list[str]) -> list[str]:
    try:
        values = [int(f) for f in folds]
    except ValueError:
        raise DssdnError(f"{root}: the fold column must hold integers on every row") from None
    order = sorted(set(values))
    if len(order) < 2:
        raise DssdnError(f"{root}: a single fold; give at least 2 (the highest is the test set)")
    test = order[-1]
    val = order[-2] if len(order) >= 3 else None
    return ["test" if f == test else "val" if f == val else "train" for f in values]


def stratified_split(rows: list[dict], fractions: tuple[float, float, float], seed: int) -> list[str]:
    """Whole groups (source recordings; each clip its own group when none is given) are assigned to a
    split, stratified by each group's most common label: per label its groups are shuffled with ``seed``,
    the first ~val share goes to val, the next ~test share to test, the rest to train. Every label keeps at
    least one training group; val/test get a group of a label only when it has enough to spare (4 for
    val, 3 for test)."""
    _, f_val, f_test = fractions
    rng = np.random.default_rng(seed)
    members: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        members.setdefault(r.get("group") or f"\0{i}", []).append(i)
    by_label: dict[str, list[str]] = {}
    for g, idx in members.items():
        labels = [rows[i]["label"] for i in idx]
        by_label.setdefault(max(sorted(set(labels)), key=labels.count), []).append(g)
    out = ["train"] * len(rows)
    for label in sorted(by_label):
        groups = sorted(by_label[label])
        n = len(groups)
        n_test = max(1, round(f_test * n)) if n >= 3 and f_test > 0 else 0
        n_val = max(1, round(f_val * n)) if n >= 4 and f_val > 0 else 0
        for rank, g in enumerate(rng.permutation(n)):
            name = "val" if rank < n_val else "test" if rank < n_val + n_test else "train"
            for i in members[groups[g]]:
                out[i] = name
    return out
