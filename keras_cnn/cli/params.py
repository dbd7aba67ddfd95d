"""Per-layer parameter table for any registered model: weights, biases and BatchNorm parameters apart,
then the totals (Keras's three lines).

    python scripts/params.py --model mlp --input-shape 28x28x1 --hidden 64           # 784-64-10: 50,890
    python scripts/params.py --model mlp --input-shape 64x64x1 --hidden 32 --num-classes 3
    python scripts/params.py --list                                                  # the models and their options
"""

import keras

from keras_cnn.cli.common import ArgumentParser, add_model_args, cli_entry, description_of, model_flags, parse_shape
from keras_cnn.errors import UsageError
from keras_cnn.models import create_model, list_models, model_options


def split_counts(layer):
    """(weights, biases, batch-norm trainable, batch-norm moving statistics) of one layer."""
    weights = biases = bn = moving = 0
    for w in layer.weights:
        size = int(w.numpy().size)
        name = w.path.rsplit("/", 1)[-1]
        if isinstance(layer, keras.layers.BatchNormalization):
            if w.trainable:
                bn += size
            else:
                moving += size
        elif name == "bias":
            biases += size
        elif w.trainable:
            weights += size
    return weights, biases, bn, moving


def parameter_table(model):
    """Rows of (layer, output shape, weights, biases, batch norm, total) in graph order."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape) if hasattr(layer, "output") else ()
        weights, biases, bn, moving = split_counts(layer)
        rows.append((layer.name, str(shape), weights, biases, bn + moving, layer.count_params()))
    return rows


def format_totals(model):
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    non_trainable = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    counts = [split_counts(layer) for layer in model.layers]
    weights, biases = sum(c[0] for c in counts), sum(c[1] for c in counts)
    bn, moving = sum(c[2] for c in counts), sum(c[3] for c in counts)
    return [
        f"Weights: {weights:,}   Biases: {biases:,}   BatchNorm: {bn:,} trainable (gamma, beta) + {moving:,} moving statistics",
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
    ]


def list_table():
    lines = []
    for name in list_models():
        options = ", ".join(f"{k}={o.default!r}" for k, o in model_options(name).items())
        lines.append(f"{name:<10} {options}")
    return lines


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="params.py", description=description_of(__doc__))
    parser.add_argument("--model", help="a registered model name (see --list)")
    parser.add_argument(
        "--list", action="store_true", help="list the registered models with their options and defaults"
    )
    parser.add_argument("--input-shape", default="32x32x3", help="HxWxC, e.g. 28x28x1 (default 32x32x3)")
    parser.add_argument("--num-classes", type=int, default=10)
    add_model_args(parser)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(list_table()))
        return 0
    if not args.model:
        raise UsageError("pass --model NAME (see --list)")
    model = create_model(args.model, parse_shape(args.input_shape), args.num_classes, **model_flags(args))
    rows = parameter_table(model)
    width = max(len(r[0]) for r in rows) + 2
    shape_width = max(len(r[1]) for r in rows) + 2
    print(f"Model: {model.name}")
    header = (
        f"{'Layer':<{width}}{'Output shape':<{shape_width}}{'Weights':>12}{'Biases':>10}{'BatchNorm':>11}{'Params':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, shape, weights, biases, bn, total in rows:
        print(f"{name:<{width}}{shape:<{shape_width}}{weights:>12,}{biases:>10,}{bn:>11,}{total:>12,}")
    print("-" * len(header))
    print("\n".join(format_totals(model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
