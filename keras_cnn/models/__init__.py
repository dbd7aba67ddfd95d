"""Model registry: every model is a Keras functional model returning float32 logits.

    create_model("resnet20", (32, 32, 3), 10, shortcut="identity")

Softmax is added only at export; losses use `from_logits=True`.
"""
import functools
import inspect

from keras_cnn.errors import UsageError

_REGISTRY = {}


def register(name, builder, **fixed):
    """Register `builder(input_shape, num_classes, **options)` as `name`, with `fixed` options bound."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = (builder, fixed)


def list_models():
    _load_families()
    return sorted(_REGISTRY)


def model_options(name):
    """The keyword options `name` accepts, with their defaults."""
    builder, fixed = _lookup(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in fixed
    }


def create_model(name, input_shape, num_classes, **options):
    """Build model `name` for inputs of `input_shape` (H, W, C) and `num_classes` classes."""
    builder, fixed = _lookup(name)
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UsageError(
            f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(sorted(allowed))}"
        )
    input_shape = tuple(int(d) for d in input_shape)
    if len(input_shape) != 3 or min(input_shape) < 1:
        raise UsageError(f"input shape must be height x width x channels, e.g. 32x32x3; got {input_shape}")
    if int(num_classes) < 2:
        raise UsageError(f"num_classes must be at least 2, got {num_classes}")
    return builder(input_shape, int(num_classes), **fixed, **options)


def _lookup(name):
    _load_families()
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


@functools.cache
def _load_families():
    # Imported lazily so `import keras_cnn.models` stays cheap and cycles cannot form.
    from keras_cnn.models import alexnet, cnn, mlp, resnet, vgg  # noqa: F401
