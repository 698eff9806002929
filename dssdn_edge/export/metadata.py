"""TFLite Model Metadata for the waveform-in phone model: what MediaPipe's AudioClassifier reads.

MediaPipe (and the older TFLite Task Library) will not run an audio classifier without it: the input
tensor's ``AudioProperties`` give the sample rate and channel count its audio-to-tensor step resamples and
buffers to, and the output tensor's associated ``TENSOR_AXIS_LABELS`` file names the classes it reports.

Why written here rather than with a maintained writer: tflite-support's writers need protobuf < 4 (this
project's converter stack pins protobuf 7), and MediaPipe's pip wheels (0.10.3x, 1.x) ship metadata
writers that cannot be imported (``mediapipe.tasks.cc.metadata.python._pywrap_metadata_version`` is
missing from the wheel) and have no audio writer at all. So the metadata flatbuffer is built with the
``flatbuffers`` runtime directly, table by table, in the field order of the official schema
(``metadata_schema.fbs`` of TFLite Support / MediaPipe, file identifier ``M001``): a field's slot is its
position in its table there. ``tests/test_phone.py`` reads the result back with the official generated
reader (shipped in the mediapipe wheel) and runs MediaPipe's AudioClassifier on it.

Placement follows the TFLite convention that MediaPipe's ``ModelMetadataExtractor`` expects: the metadata
flatbuffer is a model buffer referenced by a model ``metadata`` entry named ``TFLITE_METADATA``, and the
associated files (here ``labels.txt``) are a ZIP archive appended to the model, stored uncompressed with a
fixed timestamp (so the same model gives byte-identical files).
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass

import flatbuffers
import numpy as np

from ..errors import ExportError

# Names of the phone file's tensors: its outward contract besides input and output (the quality checks and the
# tests read these intermediate tensors by name).
FEATURES_NAME = "features"  # the normalised NHWC features inside the graph
LOGMEL_NAME = "logmel"  # the log10 mel power inside the graph, before delta and normalisation
METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
# AudioProperties entered the schema in 1.3.0 (MediaPipe's metadata_version.cc); nothing newer is used, and a
# parser refuses metadata whose min_parser_version is above its own.
MIN_PARSER_VERSION = "1.3.0"
LABELS_FILE = "labels.txt"
WRITER = (
    "dssdn_edge.export.metadata: hand-built flatbuffer in the field order of the official TFLite metadata "
    "schema (metadata_schema.fbs, M001, min parser 1.3.0); no maintained writer installs cleanly here: "
    "tflite-support needs protobuf<4, and MediaPipe's pip writers fail to import (no "
    "_pywrap_metadata_version in the wheel) and have no audio writer"
)
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)

# Enum values of the official schema.
TENSOR_AXIS_LABELS = 2  # AssociatedFileType
CONTENT_FEATURE = 1  # ContentProperties union: FeatureProperties
CONTENT_AUDIO = 4  # ContentProperties union: AudioProperties


@dataclass(frozen=True)
class AudioClassifierInfo:
    """Everything the metadata says about one waveform-in classifier."""

    name: str
    version: str
    description: str
    author: str
    licence: str
    sample_rate: int
    channels: int
    labels: tuple[str, ...]
    input_description: str
    output_description: str

    def __post_init__(self) -> None:
        if self.channels != 1:
            raise ValueError(f"only mono models are written (channels={self.channels})")
        bad = [lab for lab in self.labels if not lab or "\n" in lab or "\r" in lab]
        if bad or not self.labels:
            raise ValueError(f"labels must be non-empty single lines (bad: {bad[:1] or 'none given'})")

    def labels_text(self) -> bytes:
        """One label per line, line i naming output index i (no trailing newline: no empty extra label)."""
        return "\n".join(self.labels).encode("utf-8")


# ------------------------------------------------------------------------------------------- builder
class _Tables:
    """Small helpers over ``flatbuffers.Builder``: a table is written with (slot, kind, value) fields."""

    def __init__(self) -> None:
        self.b = flatbuffers.Builder(1024)

    def strings(self, values: Sequence[str]) -> list[int]:
        return [self.b.CreateString(v) for v in values]

    def offsets(self, items: Sequence[int]) -> int:
        """A vector of table/string offsets."""
        self.b.StartVector(4, len(items), 4)
        for off in reversed(items):
            self.b.PrependUOffsetTRelative(off)
        return self.b.EndVector()

    def floats(self, values: Sequence[float]) -> int:
        return self.b.CreateNumpyVector(np.asarray(values, dtype=np.float32))

    def table(self, n_slots: int, fields: Sequence[tuple[int, str, int | float | None]]) -> int:
        """Fields as (slot, kind, value); kind 'off' (offset), 'u8', 'i8', 'u32'. None values are omitted."""
        b = self.b
        b.StartObject(n_slots)
        for slot, kind, value in fields:
            if value is None:
                continue
            if kind == "off":
                b.PrependUOffsetTRelativeSlot(slot, int(value), 0)
            elif kind == "u8":
                b.PrependUint8Slot(slot, int(value), 0)
            elif kind == "i8":
                b.PrependInt8Slot(slot, int(value), 0)
            elif kind == "u32":
                b.PrependUint32Slot(slot, int(value), 0)
            else:  # pragma: no cover - programming error
                raise ValueError(kind)
        return b.EndObject()


def build_metadata(info: AudioClassifierInfo) -> bytes:
    """The ModelMetadata flatbuffer (identifier M001) for a [1, samples] float audio input and a [1, N]
    score output whose axis 1 is named by ``labels.txt``."""
    t = _Tables()
    name, desc, version, author, licence, min_ver = t.strings(
        [info.name, info.description, info.version, info.author, info.licence, MIN_PARSER_VERSION]
    )
    in_name, in_desc, out_name, out_desc, file_name, file_desc = t.strings(
        ["audio", info.input_description, "scores", info.output_description, LABELS_FILE,
         f"the {len(info.labels)} class names, line i = score i"]
    )
    # table AudioProperties { sample_rate:uint; channels:uint; }
    audio = t.table(2, [(0, "u32", info.sample_rate), (1, "u32", info.channels)])
    # table Content { content_properties:ContentProperties (union: type slot 0, value slot 1); range:ValueRange; }
    in_content = t.table(3, [(0, "u8", CONTENT_AUDIO), (1, "off", audio)])
    feature = t.table(0, [])  # table FeatureProperties {}
    out_content = t.table(3, [(0, "u8", CONTENT_FEATURE), (1, "off", feature)])
    # table Stats { max:[float]; min:[float]; } — softmax scores lie in [0, 1]
    stats = t.table(2, [(0, "off", t.floats([1.0])), (1, "off", t.floats([0.0]))])
    # table AssociatedFile { name; description; type:AssociatedFileType; locale; version; }
    labels = t.table(5, [(0, "off", file_name), (1, "off", file_desc), (2, "i8", TENSOR_AXIS_LABELS)])
    # table TensorMetadata { name; description; dimension_names; content; process_units; stats; associated_files; }
    in_tensor = t.table(7, [(0, "off", in_name), (1, "off", in_desc), (3, "off", in_content)])
    out_tensor = t.table(
        7,
        [(0, "off", out_name), (1, "off", out_desc), (3, "off", out_content), (5, "off", stats),
         (6, "off", t.offsets([labels]))],
    )
    # table SubGraphMetadata { name; description; input_tensor_metadata; output_tensor_metadata; ... }
    subgraph = t.table(
        10,
        [(0, "off", t.strings([info.name])[0]), (2, "off", t.offsets([in_tensor])),
         (3, "off", t.offsets([out_tensor]))],
    )
    # table ModelMetadata { name; description; version; subgraph_metadata; author; license; associated_files;
    #                       min_parser_version; }
    root = t.table(
        8,
        [(0, "off", name), (1, "off", desc), (2, "off", version), (3, "off", t.offsets([subgraph])),
         (4, "off", author), (5, "off", licence), (7, "off", min_ver)],
    )
    t.b.Finish(root, file_identifier=FILE_IDENTIFIER)
    return bytes(t.b.Output())


# ------------------------------------------------------------------------------------------ populate
def populate(model_bytes: bytes, info: AudioClassifierInfo) -> bytes:
    """``model_bytes`` (a .tflite without appended files) with the metadata buffer, its ``TFLITE_METADATA``
    entry and the labels ZIP appended. Any earlier TFLITE_METADATA entry is replaced."""
    from ai_edge_litert import schema_py_generated as schema

    from .tflite import compact

    if len(info.labels) != _output_size(model_bytes):
        raise ExportError(
            f"metadata: {len(info.labels)} labels for a model with {_output_size(model_bytes)} outputs"
        )
    model = schema.ModelT.InitFromPackedBuf(model_bytes, 0)
    model.metadata = [m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())]
    buf = schema.BufferT()
    buf.data = np.frombuffer(build_metadata(info), np.uint8).copy()
    model.buffers.append(buf)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    packed = compact(bytes(builder.Output()), strip_names=False)  # re-aligns constant buffers to 16 bytes
    return append_files(packed, {LABELS_FILE: info.labels_text()})


def append_files(model_bytes: bytes, files: dict[str, bytes]) -> bytes:
    """The model followed by a ZIP of ``files`` (stored, fixed timestamps): TFLite's associated-file layout."""
    out = io.BytesIO(model_bytes)
    out.seek(0, io.SEEK_END)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name in sorted(files):
            zi = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_STORED
            zi.external_attr = 0o644 << 16
            zf.writestr(zi, files[name])
    return out.getvalue()


def read_associated_files(model_bytes: bytes) -> dict[str, bytes]:
    """The files appended to a model (empty if none)."""
    try:
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as zf:
            return {n: zf.read(n) for n in zf.namelist()}
    except zipfile.BadZipFile:
        return {}


def metadata_buffer(model_bytes: bytes) -> bytes | None:
    """The raw TFLITE_METADATA flatbuffer of a model, or None."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            buf = model.Buffers(entry.Buffer())
            return buf.DataAsNumpy().tobytes() if buf.DataLength() else None
    return None


def _output_size(model_bytes: bytes) -> int:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(model_bytes, 0)
    sg = model.Subgraphs(0)
    shape = sg.Tensors(sg.Outputs(0)).ShapeAsNumpy()
    return int(shape[-1])
