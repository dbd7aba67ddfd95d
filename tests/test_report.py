"""The results report: leaderboard, best trials, sweeps, report.md and report.png; unknown CSVs skipped."""

import json

import pandas as pd

from keras_cnn.cli import report, train
from tuning import sweep, tune


def test_report_ranks_runs_shows_searches_and_sweeps_and_skips_unknown_csv(mnist_small, tmp_path, capsys):
    small = [
        "--data-dir",
        str(mnist_small),
        "--output-dir",
        str(tmp_path),
        "--epochs",
        "1",
        "--batch-size",
        "32",
        "--quiet",
    ]
    assert train.main(["--model", "mlp", "--name", "good", "--lr", "0.05", *small]) == 0
    assert train.main(["--model", "linear", "--name", "slow", "--lr", "0.0001", *small]) == 0
    assert (
        tune.main(
            [
                "--model",
                "mlp",
                "--data-dir",
                str(mnist_small),
                "--output-dir",
                str(tmp_path),
                "--max-trials",
                "2",
                "--epochs-per-trial",
                "1",
                "--set",
                "data.batch_size=64",
            ]
        )
        == 0
    )
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "lab"\n[base]\n"data.dataset" = "mnist"\n"run.epochs" = 1\n"data.batch_size" = 64\n'
        '[arms.a]\n"model.name" = "linear"\n[arms.b]\n"model.name" = "mlp"\n'
    )
    assert sweep.main([str(lab), "--seeds", "1", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)]) == 0
    (tmp_path / "notes.csv").write_text("a,b\n1,2\n")
    capsys.readouterr()
    assert report.main([str(tmp_path), "--format", "json", "--top", "3"]) == 0
    out = capsys.readouterr().out
    board = json.loads(out[: out.rindex("]") + 1])
    accs = [r["best_val_accuracy"] for r in board]
    assert len(board) == 3 and accs == sorted(accs, reverse=True)
    assert {"run", "model", "lr", "epochs", "seconds", "images_per_sec", "status"} <= set(board[0])
    text = (tmp_path / "report.md").read_text()
    assert "## Leaderboard" in text and "## Search `mlp-mnist-random`" in text and "## Sweep `lab`" in text
    assert "## Search `lab`" not in text  # a sweep's trials are summarized by its arms, not shown as a search
    assert "| nan" not in text
    assert "notes.csv" in text and (tmp_path / "report.png").stat().st_size > 5000
    runs = pd.read_csv(tmp_path / "runs.csv")
    assert board[0]["best_val_accuracy"] >= runs["best_val_accuracy"].max() - 1e-9


def test_report_of_a_folder_with_nothing_known_is_one_line(tmp_path, capsys):
    (tmp_path / "x.csv").write_text("a\n1\n")
    assert report.main([str(tmp_path)]) == 2
    assert "nothing to report" in capsys.readouterr().err
