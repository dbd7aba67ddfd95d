"""The model registry (timm's pattern): families register builders here; nothing here imports a family.

    register("resnet20", build_cifar_resnet, depth=20)
    create_model("resnet20", (32, 32, 3), 10, shortcut="identity")

Every builder returns a Keras functional model ending in float32 logits (softmax only at export).
"""
import inspect

from keras_cnn.errors import UsageError

_REGISTRY = {}


def register(name, builder, *, shared=None, **fixed):
    """Register `builder(input_shape, num_classes, **options)` as `name`.

    fixed: options bound for this variant (depth=16); shared: the shared options (see
    models.layers.shared_options) the family takes, with its defaults, passed as keywords.
    """
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = (builder, fixed, dict(shared or {}))


def list_models():
    return sorted(_REGISTRY)


def model_options(name):
    """The keyword options `name` accepts, with their defaults."""
    builder, fixed, shared = _lookup(name)
    own = {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.kind == p.KEYWORD_ONLY and p.name not in fixed
    }
    return {**shared, **own}


def create_model(name, input_shape, num_classes, **options):
    """Build model `name` for inputs of `input_shape` (H, W, C) and `num_classes` classes."""
    builder, fixed, shared = _lookup(name)
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
    options = {**shared, **options}  # every shared option reaches the builder, at the family's default
    try:
        return builder(input_shape, int(num_classes), **fixed, **options)
    except ValueError as err:
        if "output size would be zero or negative" not in str(err) and "negative dimension" not in str(err).lower():
            raise
    side = smallest_input_side(builder, input_shape, int(num_classes), {**fixed, **options})
    raise UsageError(
        f"model {name!r} needs inputs of at least {side}x{side} pixels (its pooling shrinks smaller ones to nothing); "
        f"these are {input_shape[0]}x{input_shape[1]}: resize them (train.py --image-size {side}) or choose another model"
    )


def smallest_input_side(builder, input_shape, num_classes, options, limit=1024):
    """The smallest square side the builder accepts (binary search over sizes; used on the error path only)."""
    def builds(side):
        try:
            builder((side, side, input_shape[2]), num_classes, **options)
            return True
        except ValueError:
            return False

    low, high = max(input_shape[0], input_shape[1]), limit
    if not builds(high):
        return limit
    while low < high:
        middle = (low + high) // 2
        if builds(middle):
            high = middle
        else:
            low = middle + 1
    return low


def _lookup(name):
    if name not in _REGISTRY:
        raise UsageError(f"unknown model {name!r}; choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]
