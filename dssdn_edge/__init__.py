"""dssdn-edge: DSSDN acoustic scene classifiers from PyTorch to int8 on edge devices.

The data flow, top to bottom: ``load_audio`` → ``Frontend`` (split log-mel) → ``create_model`` /
``load_checkpoint`` → ``export`` (ONNX, TFLite, TFLM C array) → ``bench``.
"""

from .audio import load_audio
from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .errors import AudioError, CheckpointError, DssdnError, ExportError
from .frontend import Frontend, FrontendConfig, Normalization
from .model import ModelConfig, build_model, model_names
from .pretrained import create_model, load_pretrained
from .version import __version__

__all__ = [
    "__version__",
    "AudioError",
    "Checkpoint",
    "CheckpointError",
    "DssdnError",
    "ExportError",
    "Frontend",
    "FrontendConfig",
    "ModelConfig",
    "Normalization",
    "build_model",
    "create_model",
    "load_audio",
    "load_checkpoint",
    "load_pretrained",
    "model_names",
    "save_checkpoint",
]
