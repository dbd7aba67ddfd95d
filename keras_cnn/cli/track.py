"""Experiment tracking: upload a run, search or sweep folder to MLflow (what a failed server missed).

    python scripts/track.py sync runs/resnet20-cifar10
    python scripts/track.py sync searches/mlp-mnist-random --tracking-uri http://127.0.0.1:5000

`sync` is idempotent: it asks the server what each MLflow run holds and uploads only what is
missing (params, every history row once, tags, artifacts, the exported model), continuing the MLflow
runs recorded in each folder's tracking.json. Without --tracking-uri it uses the server the folder
was last tracked on, else $MLFLOW_TRACKING_URI, else the SQLite store <output_dir>/mlflow.db.
"""

import logging
import os

from keras_cnn.cli.common import ArgumentParser, cli_entry, description_of
from keras_cnn.errors import RunDamaged, UsageError
from keras_cnn.tracking import check_installed


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="track.py", description=description_of(__doc__))
    commands = parser.add_subparsers(dest="command", required=True, metavar="sync")
    sync_parser = commands.add_parser("sync", help="upload what the tracking server is missing for a folder")
    sync_parser.add_argument("folder", help="a run folder, or a search or sweep folder (every run under it)")
    sync_parser.add_argument("--tracking-uri", metavar="URI", help="the MLflow server or store to upload to")
    sync_parser.add_argument("--experiment", metavar="NAME", help="the experiment for runs not tracked before")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    check_installed("mlflow", "track.py sync")
    if not os.path.isdir(args.folder):
        raise UsageError(f"{args.folder} is not a folder; give a run, search or sweep folder")
    from mlflow.exceptions import MlflowException

    from keras_cnn.tracking.session import describe
    from keras_cnn.tracking.sync import sync_folder

    try:
        done = sync_folder(args.folder, args.tracking_uri, experiment=args.experiment)
    except (RunDamaged, UsageError):
        raise
    except (MlflowException, OSError, ConnectionError) as err:
        where = args.tracking_uri or "the folder's tracking server"
        raise UsageError(
            f"cannot upload to MLflow at {where} ({describe(err)}); check that the server runs, then rerun track.py sync"
        ) from None
    for item in done:
        print(
            f"synced MLflow run {item['run_id']} at {item['uri']}: "
            f"{item['epochs_logged']} new epoch(s), status {item['status']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
