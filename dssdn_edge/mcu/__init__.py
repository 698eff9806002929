"""The int8 model as generated C for microcontrollers: no interpreter, a static arena, TFLM's exact bits.

``generate_model_c`` reads the int8 ``.tflite`` (``graph``), plans the activations (``plan``), lowers every
op to its kernel's constants (``ops``, ``quant``) and writes ``dssdn_model.c/.h`` (``codegen``) next to the
kernel library (``csrc/``). ``host.HostModel`` compiles that C on the host and runs it, for tests and checks.
"""

from .generate import McuModelReport, generate_model_c

__all__ = ["McuModelReport", "generate_model_c"]
