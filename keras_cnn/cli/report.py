"""Results report: a leaderboard of every run under a folder, each search's best trials, each sweep's arms.

    python scripts/report.py runs
    python scripts/report.py searches --format csv --top 5

Reads runs.csv (and each run's config.json and history.csv), trials.csv and sweep.csv under
OUTPUT_DIR, skipping CSV files of other shapes; prints the leaderboard (md, csv or json) and writes
OUTPUT_DIR/report.md and OUTPUT_DIR/report.png (the top runs' validation curves).
"""

import os

from keras_cnn.cli.common import ArgumentParser, at_least, cli_entry
from keras_cnn.errors import UsageError
from keras_cnn.reports import collect, markdown, write_report


@cli_entry
def main(argv=None):
    parser = ArgumentParser(prog="report.py", description=__doc__.splitlines()[0])
    parser.add_argument("output_dir", help="a folder of runs, searches or sweeps (e.g. runs, searches)")
    parser.add_argument("--format", default="md", choices=("md", "csv", "json"), help="how to print the leaderboard")
    parser.add_argument("--top", type=int, default=10, help="runs in the leaderboard")
    args = parser.parse_args(argv)
    at_least(args.top, "--top")
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


if __name__ == "__main__":
    raise SystemExit(main())
