"""The export formats as data: file name, converter, what must be installed to make and run it.

Add a format here (and its converter in convert.py); export.py's --format, its help and the
missing-extra check follow.
"""

import dataclasses
import importlib.util

from keras_cnn.errors import UsageError

EXTRA = "pip install -e '.[deploy]'"


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    filename: str  # in the export's version folder
    help: str
    needs: tuple[str, ...] = ()  # modules to convert and run it (the report runs every file)
    quantized: bool = False  # integer tensors: scored by top-1 agreement, not by closeness


FORMATS = {
    f.name: f
    for f in (
        Format("savedmodel", "saved_model.pb", "TensorFlow SavedModel for TF Serving (always written: the reference)"),
        Format("tflite", "model.tflite", "LiteRT float32", needs=("ai_edge_litert",)),
        Format(
            "tflite-fp16", "model_fp16.tflite", "LiteRT, float16 weights (half the size)", needs=("ai_edge_litert",)
        ),
        Format(
            "tflite-int8",
            "model_int8.tflite",
            "LiteRT full-integer post-training quantization, uint8 in and out",
            needs=("ai_edge_litert",),
            quantized=True,
        ),
        Format("onnx", "model.onnx", "ONNX (opset 17) for ONNX Runtime", needs=("tf2onnx", "onnx", "onnxruntime")),
    )
}


def parse(text: str) -> list[Format]:
    """`--format a,b`: known names, each once, the SavedModel first (every other format is scored against it)."""
    names = [n.strip().lower() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in FORMATS]
    if unknown or not names:
        raise UsageError(
            f"unknown --format {','.join(unknown) or repr(text)}; choose from {', '.join(FORMATS)} (comma-separated)"
        )
    chosen = ["savedmodel"] + [n for n in dict.fromkeys(names) if n != "savedmodel"]
    formats = [FORMATS[n] for n in chosen]
    check_installed(formats)
    return formats


def check_installed(formats: list[Format]) -> None:
    for fmt in formats:
        missing = [m for m in fmt.needs if importlib.util.find_spec(m) is None]
        if missing:
            raise UsageError(
                f"--format {fmt.name} needs {', '.join(missing)}, which is not installed; install the extra: {EXTRA}"
            )


def of_file(path: str) -> Format:
    """The format of an exported file, by its name."""
    for fmt in FORMATS.values():
        if fmt.name != "savedmodel" and path.endswith(fmt.filename):
            return fmt
    if path.endswith(".tflite"):
        return FORMATS["tflite"]
    if path.endswith(".onnx"):
        return FORMATS["onnx"]
    return FORMATS["savedmodel"]
