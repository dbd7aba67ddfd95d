"""Export a run as a SavedModel for TensorFlow Serving: <export-dir>/<run name>/<next version>/.

    python scripts/export.py --run runs/resnet20-cifar10 --export-dir exports
    python scripts/export.py --run runs/resnet20-cifar10 --checkpoint runs/resnet20-cifar10/checkpoints/best.npz
    python scripts/export.py --ensemble runs/a runs/b runs/c --name abc --export-dir exports

--ensemble writes one SavedModel that averages its members' probabilities, with the same two signatures.
"""

from keras_cnn.cli.common import ArgumentParser, cli_entry, folder_name
from keras_cnn.errors import UsageError
from keras_cnn.export import export_ensemble, export_run


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="export.py", description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory written by train.py")
    source.add_argument("--ensemble", nargs="+", metavar="RUN", help="several runs of one dataset, averaged")
    parser.add_argument("--export-dir", default="exports", help="base directory (default exports)")
    parser.add_argument("--checkpoint", help="export this checkpoint's weights instead of the final model")
    parser.add_argument("--name", help="model name under the export dir (default: the run's name)")
    args = parser.parse_args(argv)
    if args.name is not None:
        folder_name(args.name, "--name")
    if args.ensemble:
        if len(args.ensemble) < 2 or not args.name or args.checkpoint:
            raise UsageError("--ensemble takes at least 2 runs and a --name (and no --checkpoint)")
        path = export_ensemble(args.ensemble, args.export_dir, args.name)
    else:
        path = export_run(args.run, args.export_dir, checkpoint=args.checkpoint, name=args.name)
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
