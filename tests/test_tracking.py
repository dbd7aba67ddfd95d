"""MLflow tracking against a real `mlflow server` on localhost (SQLite backend, a temp artifact root),
checked through the server's REST API: runs, resume after SIGKILL, searches, a server that dies."""

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import keras
import numpy as np
import pytest
import tensorflow as tf

import keras_cnn
from keras_cnn.cli import report, track, train
from keras_cnn.errors import Interrupted
from keras_cnn.tracking import state
from tuning import sweep, tune

from conftest import ROOT, child_env, mnist_config

SERVER_START_SECONDS = 120


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`mlflow server` in its own process group, on a SQLite file that outlives a restart."""

    def __init__(self, root, port=None):
        self.root, self.port = root, port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def start(self):
        self.root.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        argv += ["--backend-store-uri", f"sqlite:///{self.root / 'mlflow.db'}"]
        argv += ["--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        log = open(self.root / "server.log", "ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=log, start_new_session=True, env=child_env())
        deadline = time.time() + SERVER_START_SECONDS
        while time.time() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"mlflow server did not start in {SERVER_START_SECONDS} s")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def get(self, endpoint, **query):
        with urllib.request.urlopen(f"{self.url}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}") as r:
            return json.load(r)

    def post(self, endpoint, **body):
        request = urllib.request.Request(
            f"{self.url}/api/2.0/mlflow/{endpoint}",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request) as r:
            return json.load(r)

    # What the tests read back, through the REST API only.
    def runs(self, experiment):
        found = self.get("experiments/get-by-name", experiment_name=experiment)["experiment"]
        return self.post("runs/search", experiment_ids=[found["experiment_id"]], max_results=1000).get("runs", [])

    def run(self, run_id):
        return self.get("runs/get", run_id=run_id)["run"]

    def steps(self, run_id, metric):
        found = self.get("metrics/get-history", run_id=run_id, metric_key=metric).get("metrics", [])
        return [m["step"] for m in found]

    def artifacts(self, run_id, path=""):
        listing = self.get("artifacts/list", run_id=run_id, path=path).get("files", [])
        return {f["path"] for f in listing}


def tags(run):
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def params(run):
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def mlflow_run_id(run_dir, uri):
    return state.entry(str(run_dir), uri)["run_id"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    live = Server(tmp_path_factory.mktemp("mlflow")).start()
    yield live
    live.kill()


@pytest.fixture(scope="module")
def tracked(server, mnist_small, tmp_path_factory):
    """A 2-epoch MLP run tracked on the server, its export registered as `mnist-mlp`."""
    out = tmp_path_factory.mktemp("tracked")
    cfg = mnist_config(
        mnist_small,
        out,
        "run.epochs=2",
        "run.name=tracked",
        "run.track=mlflow",
        f"run.tracking_uri={server.url}",
        "run.register=mnist-mlp",
    )
    result = keras_cnn.train(cfg, verbose=0)
    return result, mlflow_run_id(result.run_dir, server.url)


def test_a_run_logs_params_every_epoch_tags_artifacts_and_its_registered_model(server, tracked):
    result, run_id = tracked
    run = server.run(run_id)
    assert run["info"]["status"] == "FINISHED" and run["info"]["run_name"] == "tracked"
    logged = params(run)
    assert logged["model.name"] == "mlp" and logged["model.hidden"] == "128"
    assert logged["optimizer.learning_rate"] == "0.1" and logged["data.dataset"] == "mnist"
    assert "run.tracking_uri" not in logged and "run.epochs" not in logged  # not what a run computes
    assert len(logged) > 40
    labels = tags(run)
    assert labels["status"] == "finished" and labels["model"] == "mlp" and labels["dataset"] == "mnist"
    assert labels["keras_cnn.kind"] == "run" and labels["precision"] == "float32" and labels["host"]
    assert labels["epochs"] == "2" and labels["cpu"]
    with open(os.path.join(result.run_dir, "history.csv")) as f:
        history = list(csv.DictReader(f))
    assert server.steps(run_id, "val_accuracy") == [1, 2]
    values = [
        m["value"] for m in server.get("metrics/get-history", run_id=run_id, metric_key="val_accuracy")["metrics"]
    ]
    np.testing.assert_allclose(values, [float(r["val_accuracy"]) for r in history])
    assert server.steps(run_id, "best_val_accuracy") == [2]
    assert {"config.json", "history.csv", "curves.png", "lr.png", "model"} <= server.artifacts(run_id)
    assert "model/MLmodel" in server.artifacts(run_id, "model")
    versions = server.get("registered-models/get", name="mnist-mlp")["registered_model"]["latest_versions"]
    assert [v["run_id"] for v in versions] == [run_id]


def test_the_logged_model_loads_with_pyfunc_and_predicts_like_the_saved_model(server, tracked, mnist_npz, monkeypatch):
    import mlflow

    result, run_id = tracked
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    images = np.load(mnist_npz)["x_train"][:16].reshape(16, 28, 28, 1).astype(np.uint8)
    served = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    predicted = served.predict(images)
    saved = tf.saved_model.load(os.path.join(result.run_dir, "saved_model", "1"))
    expected = saved.signatures["serving_default"](images=tf.constant(images))["probabilities"].numpy()
    np.testing.assert_allclose(predicted, expected, atol=1e-6)
    assert predicted.shape == (16, 10)
    assert served.metadata.get_input_schema().inputs[0].shape == (-1, 28, 28, 1)


def test_syncing_a_tracked_run_again_uploads_nothing_twice(server, tracked, capsys):
    result, run_id = tracked
    assert track.main(["sync", result.run_dir, "--tracking-uri", server.url]) == 0
    assert f"synced MLflow run {run_id}" in capsys.readouterr().out
    assert server.steps(run_id, "val_accuracy") == [1, 2] and server.steps(run_id, "best_val_accuracy") == [2]
    versions = server.get("registered-models/get", name="mnist-mlp")["registered_model"]["latest_versions"]
    assert len(versions) == 1


def kill_argv(data_dir, out, url):
    return [
        sys.executable,
        str(ROOT / "scripts" / "train.py"),
        *("--model", "mlp", "--hidden", "64", "--dataset", "mnist", "--data-dir", str(data_dir)),
        *("--output-dir", str(out), "--name", "killed", "--epochs", "3", "--batch-size", "8"),
        *("--set", "run.steps_per_call=1", "--set", "run.checkpoint_every_steps=4", "--set", "run.precision=float32"),
        *("--track", "mlflow", "--tracking-uri", url),
    ]


def test_sigkill_and_resume_continue_one_mlflow_run_with_every_step_once(server, mnist_small, tmp_path):
    argv = kill_argv(mnist_small, tmp_path, server.url)
    run_dir = tmp_path / "killed"
    proc = subprocess.Popen(argv, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Killed once the server holds epoch 1 and the run is into epoch 2 (a checkpoint of epoch index 1).
    deadline, run_id = time.time() + 300, None
    while time.time() < deadline:
        assert proc.poll() is None, "the run ended before it could be killed"
        # Any checkpoint of epoch index 1: a particular one is pruned (keep_checkpoints) a few steps
        # later, and a watcher that missed it saw the run end before the kill.
        into_epoch_2 = any((run_dir / "checkpoints").glob("ckpt-e0001-b*.npz"))
        if (run_dir / "tracking.json").exists() and into_epoch_2:
            run_id = mlflow_run_id(run_dir, server.url)
            # Epoch 1 on the server, the run still going (if epoch 2 made it too, the resume
            # must still leave every epoch there once).
            if server.steps(run_id, "epoch")[:1] == [1]:
                break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL and run_id
    assert server.run(run_id)["info"]["status"] == "RUNNING"  # nobody could tell the server

    rerun = subprocess.run(argv, env=child_env(), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "resuming" in rerun.stdout + rerun.stderr
    assert mlflow_run_id(run_dir, server.url) == run_id
    mine = [r for r in server.runs("keras_cnn-mnist") if tags(r).get("keras_cnn.run_dir") == str(run_dir)]
    assert [r["info"]["run_id"] for r in mine] == [run_id]  # one MLflow run for the folder
    for metric in ("epoch", "val_accuracy", "train_loss", "lr"):
        assert server.steps(run_id, metric) == [1, 2, 3], metric
    assert server.run(run_id)["info"]["status"] == "FINISHED"

    # --epochs more: the same MLflow run again, the new epoch only.
    more = subprocess.run([*argv, "--epochs", "4"], env=child_env(), capture_output=True, text=True, timeout=600)
    assert more.returncode == 0, more.stderr[-2000:]
    assert server.steps(run_id, "val_accuracy") == [1, 2, 3, 4]
    assert tags(server.run(run_id))["epochs"] == "4"


def test_a_search_is_one_parent_run_with_a_child_per_trial(server, mnist_small, tmp_path, capsys):
    argv = [
        *("--model", "mlp", "--dataset", "mnist", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path)),
        *("--epochs-per-trial", "1", "--max-trials", "3", "--tuner", "random", "--name", "tracked-search"),
        *("--set", "model.hidden=32", "--set", "run.steps_per_epoch=8", "--set", "run.precision=float32"),
        *("--track", "mlflow", "--tracking-uri", server.url, "--experiment", "searches"),
    ]
    assert tune.main(argv) == 0
    runs = server.runs("searches")
    parents = [r for r in runs if tags(r).get("keras_cnn.kind") == "search"]
    assert len(parents) == 1 and parents[0]["info"]["status"] == "FINISHED"
    parent_id = parents[0]["info"]["run_id"]
    children = [r for r in runs if tags(r).get("mlflow.parentRunId") == parent_id]
    assert len(children) == 3 and all(tags(c)["keras_cnn.kind"] == "trial" for c in children)
    with open(tmp_path / "tracked-search" / "trials.csv") as f:
        trials = {r["trial_id"]: r for r in csv.DictReader(f)}
    for child in children:
        trial = trials[child["info"]["run_name"].removeprefix("trial_")]
        assert child["info"]["status"] == "FINISHED"
        for key in ("optimizer.learning_rate", "optimizer.weight_decay"):  # the oracle's values
            assert float(params(child)[key]) == pytest.approx(float(trial[key]))
    capsys.readouterr()

    # The leaderboard read back from the server: the three trials, best first.
    assert report.main(["--from-mlflow", server.url, "--experiment", "searches", "--format", "csv"]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert sorted(r["run"] for r in rows) == [f"tracked-search/trial_{i}" for i in range(3)]
    for row in rows:  # each trial's own number, and best first
        trial = trials[row["run"].removeprefix("tracked-search/trial_")]
        assert float(row["best_val_accuracy"]) == pytest.approx(float(trial["best_val_accuracy"]), abs=5e-5)  # 4 places
    accuracies = [float(r["best_val_accuracy"]) for r in rows]
    assert accuracies == sorted(accuracies, reverse=True)


def test_a_sweep_is_one_parent_run_with_a_child_per_arm_seed(server, mnist_npz, tmp_path):
    lab = tmp_path / "lab.toml"
    lab.write_text(
        'name = "tracked-lab"\n[base]\n"data.dataset" = "mnist"\n"model.name" = "mlp"\n"run.epochs" = 1\n'
        '[arms.narrow]\n"model.hidden" = [8]\n[arms.wide]\n"model.hidden" = [32]\n'
    )
    argv = [str(lab), "--seeds", "2", "--data-dir", str(mnist_npz), "--output-dir", str(tmp_path / "labs")]
    argv += ["--set", "run.steps_per_epoch=4", "--set", "run.precision=float32"]
    assert sweep.main([*argv, "--track", "mlflow", "--tracking-uri", server.url, "--experiment", "labs"]) == 0
    runs = server.runs("labs")
    (parent,) = [r for r in runs if tags(r).get("keras_cnn.kind") == "sweep"]
    assert parent["info"]["run_name"] == "tracked-lab" and parent["info"]["status"] == "FINISHED"
    assert "sweep.csv" in server.artifacts(parent["info"]["run_id"])
    children = {r["info"]["run_name"]: r for r in runs if tags(r).get("mlflow.parentRunId") == parent["info"]["run_id"]}
    assert sorted(children) == ["narrow-seed0", "narrow-seed1", "wide-seed0", "wide-seed1"]
    assert {params(c)["model.hidden"] for c in children.values()} == {"8", "32"}
    assert all(tags(c)["keras_cnn.kind"] == "arm" and c["info"]["status"] == "FINISHED" for c in children.values())


class KillServer(keras.callbacks.Callback):
    def __init__(self, server, run_dir):
        super().__init__()
        self.server, self.run_dir = server, run_dir

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:  # the uploader had epoch 1 while the second trained: killed once the server has it
            deadline = time.time() + 120  # a loaded machine (the suite's other worker) delays the thread
            while time.time() < deadline:
                run_id = state.entry(str(self.run_dir), self.server.url).get("run_id")
                if run_id and self.server.steps(run_id, "epoch") == [1]:
                    break
                time.sleep(0.1)
            self.server.kill()
            self.killed_at = time.perf_counter()


def test_a_server_killed_mid_run_leaves_training_finished_and_sync_completes_it(mnist_small, tmp_path, caplog):
    dying = Server(tmp_path / "server").start()
    try:
        cfg = mnist_config(
            mnist_small,
            tmp_path / "runs",
            "run.epochs=3",
            "run.name=orphan",
            "run.track=mlflow",
            f"run.tracking_uri={dying.url}",
        )
        killer = KillServer(dying, tmp_path / "runs" / "orphan")
        result = keras_cnn.train(cfg, callbacks=[killer], verbose=0)
        seconds = time.perf_counter() - killer.killed_at
        assert result.status == "finished" and os.path.isdir(os.path.join(result.run_dir, "saved_model", "1"))
        warnings = [r.getMessage() for r in caplog.records if "MLflow tracking" in r.getMessage()]
        assert len(warnings) == 1 and "track.py sync" in warnings[0], warnings
        assert seconds < 90  # bounded: a few refused connections, never MLflow's default 7 retries x 120 s
        run_id = mlflow_run_id(result.run_dir, dying.url)

        dying.start()  # the same database, back up
        assert dying.steps(run_id, "epoch") == [1]
        assert track.main(["sync", result.run_dir]) == 0  # the folder remembers its server
        assert dying.steps(run_id, "epoch") == [1, 2, 3]
        assert dying.run(run_id)["info"]["status"] == "FINISHED"
        assert "model/MLmodel" in dying.artifacts(run_id, "model")
        assert track.main(["sync", result.run_dir]) == 0
        assert dying.steps(run_id, "epoch") == [1, 2, 3]
    finally:
        dying.kill()


def test_a_server_that_never_answers_costs_one_bounded_wait_and_one_warning(mnist_small, tmp_path, caplog, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # the user's own bound is kept (default 10 s)
    with socket.socket() as silent:  # connections are accepted by the kernel, then nothing is ever said
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        cfg = mnist_config(mnist_small, tmp_path, "run.epochs=2", "run.track=mlflow", f"run.tracking_uri={url}")
        started = time.perf_counter()
        result = keras_cnn.train(cfg, verbose=0)
        seconds = time.perf_counter() - started
    assert result.status == "finished" and os.path.isdir(os.path.join(result.run_dir, "saved_model", "1"))
    warnings = [r.getMessage() for r in caplog.records if "MLflow" in r.getMessage()]
    assert len(warnings) == 1 and "timed out" in warnings[0], warnings
    assert seconds < 60, seconds  # 3 tries x 2 s, plus training; never the 60 s drain or MLflow's 7 x 120 s


def test_sync_of_a_dead_server_is_one_line_exit_2(tracked, capsys):
    result, _ = tracked
    rc = track.main(["sync", result.run_dir, "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("error: cannot upload to MLflow") and "\n" not in err, err


class CtrlC(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        os.kill(os.getpid(), signal.SIGINT)


def test_ctrl_c_ends_the_mlflow_run_killed_and_the_rerun_finishes_it(server, mnist_small, tmp_path):
    cfg = mnist_config(
        mnist_small, tmp_path, "run.epochs=2", "run.name=ctrlc", "run.track=mlflow", f"run.tracking_uri={server.url}"
    )
    with pytest.raises(Interrupted):
        keras_cnn.train(cfg, callbacks=[CtrlC()], verbose=0)
    run_id = mlflow_run_id(tmp_path / "ctrlc", server.url)
    run = server.run(run_id)
    assert run["info"]["status"] == "KILLED" and tags(run)["status"] == "interrupted"
    keras_cnn.train(cfg, verbose=0)
    assert server.run(run_id)["info"]["status"] == "FINISHED"
    assert server.steps(run_id, "epoch") == [1, 2]


def test_the_local_sqlite_store_is_the_default_and_stays_in_the_output_folder(mnist_small, tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "runs"
    argv = ["--model", "mlp", "--hidden", "16", "--data-dir", str(mnist_small), "--output-dir", str(out)]
    assert train.main([*argv, "--epochs", "1", "--set", "run.export=false", "--track", "mlflow"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no ./mlruns beside it
    assert (out / "mlflow.db").is_file() and (out / "mlflow-artifacts").is_dir()
    uri = f"sqlite:///{out / 'mlflow.db'}"
    run_id = mlflow_run_id(out / "mlp-mnist", uri)
    from mlflow import MlflowClient

    assert [m.step for m in MlflowClient(uri).get_metric_history(run_id, "val_accuracy")] == [1]


def test_track_mlflow_without_mlflow_names_the_extra(mnist_small, tmp_path, monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    argv = ["--model", "mlp", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path), "--track", "mlflow"]
    assert train.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert (
        err == "error: --track mlflow needs MLflow, which is not installed; install it with: pip install -e '.[mlflow]'"
    )
    assert not list(tmp_path.iterdir())
    assert track.main(["sync", str(tmp_path)]) == 2
    assert capsys.readouterr().err.startswith("error: track.py sync needs MLflow, which is not installed")
    assert report.main(["--from-mlflow", "sqlite:///x.db"]) == 2
    assert capsys.readouterr().err.startswith("error: report.py --from-mlflow needs MLflow")


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--register", "m"], "--register needs --track mlflow"),
        (["--track", "mlflow", "--register", "m", "--set", "run.export=false"], "--register needs"),
        (["--set", "run.track=wandb"], "run.track"),
        (["--track", "wandb"], "invalid choice: 'wandb'"),
    ],
)
def test_tracking_flags_are_checked_before_anything_runs(argv, words, mnist_small, tmp_path, capsys):
    assert train.main(["--model", "mlp", "--data-dir", str(mnist_small), "--output-dir", str(tmp_path), *argv]) == 2
    assert words in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
