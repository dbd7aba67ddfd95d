"""Babysitting checks before a long run (CS231n lecture 6): a pass/warn/fail table.

    python scripts/diagnose.py --model resnet20 --dataset cifar10 --data-dir ../shared/data/cifar10
    python scripts/diagnose.py --compare-init --output-dir diag

Runs, in order: initial loss vs ln(classes) (and that regularization raises it), overfitting
20 examples, a learning-rate range test (lr_range.png), activation statistics at init
(activations.png), update/weight ratios, and a float64 gradient check. Writes
diagnostics.csv and diagnostics.json to --output-dir.
"""
import os

from keras_cnn.cli.common import ArgumentParser, add_model_args, model_options_from_args, quiet_tensorflow
from keras_cnn.errors import UsageError, cli_entry


@cli_entry
def main(argv=None):
    quiet_tensorflow()
    parser = ArgumentParser(prog="diagnose.py", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mlp")
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--data-dir")
    parser.add_argument("--output-dir", default="diagnostics")
    parser.add_argument("--learning-rate", "--lr", type=float, default=0.01, dest="learning_rate",
                        help="SGD learning rate for the update/weight ratio check")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compare-init", action="store_true", help="draw the initialization experiment instead")
    parser.add_argument("--activation-for-compare", nargs="+", default=["tanh", "relu"])
    add_model_args(parser)
    args = parser.parse_args(argv)
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create {args.output_dir} ({err.strerror}); choose a writable --output-dir") from None

    import keras

    from keras_cnn import diagnostics as d
    from keras_cnn import reports

    keras.utils.set_random_seed(args.seed)
    if args.compare_init:
        path = os.path.join(args.output_dir, "compare_init.png")
        table = d.compare_init(path, activations=tuple(args.activation_for_compare))
        reports.atomic_write(os.path.join(args.output_dir, "compare_init.csv"), reports.csv_text(table, list(table[0])))
        for row in table:
            stds = [v for k, v in row.items() if k.endswith("_std")]
            print(f"{row['activation']:<5} {row['initializer']:<15} std by layer: " + " ".join(f"{s:.3g}" for s in stds))
        print(f"picture: {path}")
        return 0

    checks = run_checks(args, d)
    width = max(len(c.name) for c in checks)
    print(f"{'check':<{width}}  status  detail")
    for c in checks:
        print(f"{c.name:<{width}}  {c.status:<6}  {c.detail}")
    reports.atomic_write(os.path.join(args.output_dir, "diagnostics.csv"),
                         reports.csv_text([c.row() for c in checks], ["check", "status", "value", "detail"]))
    reports.write_json(os.path.join(args.output_dir, "diagnostics.json"), {"checks": [c.row() for c in checks]})
    return 0 if all(c.status != "fail" for c in checks) else 1


def run_checks(args, d):
    import keras
    import tensorflow as tf

    from keras_cnn.config import DataConfig
    from keras_cnn.data import prepare_data
    from keras_cnn.data.pipeline import make_dataset
    from keras_cnn.models import create_model

    data = prepare_data(DataConfig(dataset=args.dataset, data_dir=args.data_dir, batch_size=args.batch_size), seed=args.seed)
    options = model_options_from_args(args)
    options.pop("weight_decay", None)
    shape, k = data.image_shape, data.num_classes

    def build(**extra):
        return create_model(args.model, shape, k, **options, **extra)

    def batches():
        epoch = 0
        while True:
            for batch in make_dataset(data.train, DataConfig(batch_size=args.batch_size), training=True, seed=args.seed,
                                      epoch=epoch, normalizer=data.normalizer):
                yield batch
            epoch += 1

    probe = data.normalizer(data.train.images[:256])
    labels = tf.constant(data.train.labels[:256])
    model = build()
    checks = [d.initial_loss_check(model, probe, labels, k)]
    checks.append(d.regularization_raises_loss_check(model, build(weight_decay=1e-2), probe, labels))
    tiny = data.train.take(slice(0, 20))
    checks.append(d.overfit_check(build(), data.normalizer(tiny.images), tiny.labels))
    checks.append(d.lr_range_test(build(), batches(), plot_path=os.path.join(args.output_dir, "lr_range.png")))
    stats = d.activation_statistics(model, probe)
    if stats:
        d.plot_activation_histograms(stats, os.path.join(args.output_dir, "activations.png"))
        reports_rows = [{k2: v for k2, v in s.items() if k2 != "values"} for s in stats]
        from keras_cnn import reports

        reports.atomic_write(os.path.join(args.output_dir, "activations.csv"), reports.csv_text(reports_rows, list(reports_rows[0])))
    checks.append(d.activation_check(stats))
    ratio_check, _ = d.update_ratio_check(build(), keras.optimizers.SGD(args.learning_rate, momentum=0.9), batches())
    checks.append(ratio_check)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("float64")
    try:
        from keras_cnn.models import model_options

        small = build(dropout=0.0) if "dropout" in model_options(args.model) and "dropout" not in options else build()
        grad_check, _ = d.gradient_check(small, probe[:2].numpy().astype("float64"), labels[:2])
    finally:
        keras.mixed_precision.set_global_policy(previous)
    checks.append(grad_check)
    return checks


if __name__ == "__main__":
    raise SystemExit(main())
