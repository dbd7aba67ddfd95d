"""Export a run for serving: <export-dir>/<run name>/<next version>/ (SavedModel, LiteRT, ONNX).

    python scripts/export.py --run runs/resnet20-cifar10 --export-dir exports
    python scripts/export.py --run runs/resnet20-cifar10 --format tflite,tflite-int8,onnx
    python scripts/export.py --run runs/resnet20-cifar10 --checkpoint runs/resnet20-cifar10/checkpoints/best.npz
    python scripts/export.py --ensemble runs/a runs/b runs/c --name abc --export-dir exports

The SavedModel (TF Serving) is always written; --format adds LiteRT (TFLite) float32, float16 or
full-integer int8 files and ONNX, each taking uint8 pixels with the preprocessing inside
(pip install -e '.[deploy]'). export_report.json beside them scores every format on the run's
validation split against the SavedModel, with its size and speed on this machine. --ensemble
writes one model that averages its members' probabilities, in every format.
"""

import json
import os

from keras_cnn.cli.common import ArgumentParser, at_least, cli_entry, description_of, folder_name
from keras_cnn.deploy.formats import FORMATS
from keras_cnn.deploy.report import table
from keras_cnn.deploy.write import REPORT
from keras_cnn.errors import UsageError
from keras_cnn.export import CALIBRATION_IMAGES, export_ensemble, export_run


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="export.py", description=description_of(__doc__))
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", help="a run directory written by train.py")
    source.add_argument("--ensemble", nargs="+", metavar="RUN", help="several runs of one dataset, averaged")
    parser.add_argument("--export-dir", default="exports", help="base directory (default exports)")
    parser.add_argument("--checkpoint", help="export this checkpoint's weights instead of the final model")
    parser.add_argument("--name", help="model name under the export dir (default: the run's name)")
    parser.add_argument(
        "--format",
        default="savedmodel",
        help="comma-separated: " + "; ".join(f"{f.name} ({f.help})" for f in FORMATS.values()),
    )
    parser.add_argument(
        "--calibration-images",
        type=int,
        default=CALIBRATION_IMAGES,
        help=f"tflite-int8: training images (a seeded sample) that calibrate the quantization (default {CALIBRATION_IMAGES})",
    )
    args = parser.parse_args(argv)
    at_least(args.calibration_images, "--calibration-images")
    if args.name is not None:
        folder_name(args.name, "--name")
    if args.ensemble:
        if len(args.ensemble) < 2 or not args.name or args.checkpoint:
            raise UsageError("--ensemble takes at least 2 runs and a --name (and no --checkpoint)")
        path = export_ensemble(
            args.ensemble, args.export_dir, args.name, formats=args.format, calibration_images=args.calibration_images
        )
    else:
        path = export_run(
            args.run,
            args.export_dir,
            checkpoint=args.checkpoint,
            name=args.name,
            formats=args.format,
            calibration_images=args.calibration_images,
        )
    print(f"exported {path}")
    with open(os.path.join(path, REPORT)) as f:
        print(table(json.load(f)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
