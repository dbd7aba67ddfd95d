"""Export a run as a SavedModel for TensorFlow Serving: <export-dir>/<run name>/<next version>/.

    python scripts/export.py --run runs/resnet20-cifar10 --export-dir exports
    python scripts/export.py --run runs/resnet20-cifar10 --checkpoint runs/resnet20-cifar10/checkpoints/best.npz
"""
from keras_cnn.cli.common import ArgumentParser, cli_entry, folder_name
from keras_cnn.export import export_run


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="export.py", description=__doc__.splitlines()[0])
    parser.add_argument("--run", required=True, help="a run directory written by train.py")
    parser.add_argument("--export-dir", default="exports", help="base directory (default exports)")
    parser.add_argument("--checkpoint", help="export this checkpoint's weights instead of the final model")
    parser.add_argument("--name", help="model name under the export dir (default: the run's name)")
    args = parser.parse_args(argv)
    if args.name is not None:
        folder_name(args.name, "--name")


    path = export_run(args.run, args.export_dir, checkpoint=args.checkpoint, name=args.name)
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
