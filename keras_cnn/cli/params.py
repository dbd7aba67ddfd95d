"""Per-layer parameter table for any registered model, ending in Keras's three totals."""
from keras_cnn.cli.common import ArgumentParser, add_model_args, cli_entry, model_options_from_args, parse_shape
from keras_cnn.models import create_model


def parameter_table(model):
    """Rows of (layer name, output shape, parameter count) in graph order."""
    rows = []
    for layer in model.layers:
        shape = tuple(layer.output.shape) if hasattr(layer, "output") else ()
        rows.append((layer.name, str(shape), layer.count_params()))
    return rows


def format_totals(model):
    trainable = sum(int(w.numpy().size) for w in model.trainable_weights)
    non_trainable = sum(int(w.numpy().size) for w in model.non_trainable_weights)
    return [
        f"Total params: {trainable + non_trainable:,}",
        f"Trainable params: {trainable:,}",
        f"Non-trainable params: {non_trainable:,}",
    ]


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="params.py", description=__doc__)
    parser.add_argument("--model", required=True, help="a registered model name (see --list)")
    parser.add_argument("--input-shape", default="32x32x3", help="HxWxC, e.g. 28x28x1 (default 32x32x3)")
    parser.add_argument("--num-classes", type=int, default=10)
    add_model_args(parser)
    args = parser.parse_args(argv)


    model = create_model(args.model, parse_shape(args.input_shape), args.num_classes, **model_options_from_args(args))
    rows = parameter_table(model)
    width = max(len(r[0]) for r in rows) + 2
    shape_width = max(len(r[1]) for r in rows) + 2
    print(f"Model: {model.name}")
    print(f"{'Layer':<{width}}{'Output shape':<{shape_width}}{'Params':>12}")
    print("-" * (width + shape_width + 12))
    for name, shape, count in rows:
        print(f"{name:<{width}}{shape:<{shape_width}}{count:>12,}")
    print("-" * (width + shape_width + 12))
    print("\n".join(format_totals(model)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
