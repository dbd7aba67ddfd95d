"""Results report: a leaderboard of every run under a folder, each search's best trials, each sweep's arms.

    python scripts/report.py runs
    python scripts/report.py searches --format csv --top 5
    python scripts/report.py --from-mlflow sqlite:///runs/mlflow.db --experiment keras_cnn-mnist

Reads runs.csv (and each run's config.json and history.csv), trials.csv and sweep.csv under
OUTPUT_DIR, skipping CSV files of other shapes; prints the leaderboard (md, csv or json) and writes
OUTPUT_DIR/report.md and OUTPUT_DIR/report.png (the top runs' validation curves). With --from-mlflow
it reads the same leaderboard back from an MLflow server or store instead, and writes nothing.
"""

import os

from keras_cnn.cli.common import ArgumentParser, at_least, cli_entry, description_of
from keras_cnn.errors import UsageError
from keras_cnn.reports import collect, markdown, table, write_report
from keras_cnn.tracking import check_installed


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="report.py", description=description_of(__doc__))
    parser.add_argument("output_dir", nargs="?", help="a folder of runs, searches or sweeps (e.g. runs, searches)")
    parser.add_argument("--from-mlflow", metavar="URI", help="read the runs from this MLflow server or store instead")
    parser.add_argument("--experiment", metavar="NAME", help="with --from-mlflow: the experiment (default: all)")
    parser.add_argument("--format", default="md", choices=("md", "csv", "json"), help="how to print the leaderboard")
    parser.add_argument("--top", type=int, default=10, help="runs in the leaderboard")
    args = parser.parse_args(argv)
    at_least(args.top, "--top")
    if args.from_mlflow:
        if args.output_dir:
            raise UsageError("give a folder or --from-mlflow URI, not both")
        return _from_mlflow(args)
    if args.experiment:
        raise UsageError("--experiment reads from a tracking server: add --from-mlflow URI")
    if args.output_dir is None:
        raise UsageError("give the folder to report on (e.g. runs), or --from-mlflow URI")
    if not os.path.isdir(args.output_dir):
        raise UsageError(f"{args.output_dir} is not a folder; give the --output-dir of train.py, tune.py or sweep.py")
    report = collect(args.output_dir)
    if report.runs.empty and not report.searches and not report.sweeps:
        raise UsageError(f"{args.output_dir} holds no runs.csv, trials.csv or sweep.csv; nothing to report")
    board = report.leaderboard(args.top)
    if args.format == "md":
        print(markdown(report, args.top).split("![")[0].rstrip())
    elif args.format == "csv":
        print(board.to_csv(index=False).rstrip())
    else:
        print(board.to_json(orient="records", indent=2))
    write_report(report, args.output_dir, args.top)
    print(f"\nwritten: {os.path.join(args.output_dir, 'report.md')}, {os.path.join(args.output_dir, 'report.png')}")
    return 0


def _from_mlflow(args):
    check_installed("mlflow", "report.py --from-mlflow")
    from mlflow.exceptions import MlflowException

    from keras_cnn.tracking import leaderboard
    from keras_cnn.tracking.session import describe

    try:
        board = leaderboard.runs(args.from_mlflow, args.experiment)
    except UsageError:
        raise
    except (MlflowException, OSError, ConnectionError) as err:
        raise UsageError(
            f"cannot read from MLflow at {args.from_mlflow} ({describe(err)}); check the URI and that the server runs"
        ) from None
    if board.empty:
        raise UsageError(
            f"MLflow at {args.from_mlflow} holds no keras_cnn runs in {args.experiment or 'any experiment'}"
        )
    board = board.head(args.top)
    if args.format == "md":
        where = f"{args.from_mlflow}, experiment {args.experiment}" if args.experiment else args.from_mlflow
        print(f"# Leaderboard from MLflow ({where}): best {args.top} runs by validation accuracy\n")
        print(table(board))
    elif args.format == "csv":
        print(board.to_csv(index=False).rstrip())
    else:
        print(board.to_json(orient="records", indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
