"""TensorBoard's HParams plugin summaries for searches and sweeps, written directly.

The search loop overrides Tuner.run_trial, so KerasTuner's own TensorBoard hooks never run:
the experiment (its hyperparameters and metrics) is written once at the search folder's root,
and each trial's session (its values, status and final metrics) in the trial's own
TensorBoard folder, beside its train/ and validation/ curves. `tensorboard --logdir SEARCH_DIR`
then shows the trials table and parallel coordinates.
"""

import keras_tuner
import tensorflow as tf
from tensorboard.plugins.hparams import api as hp_api
from tensorboard.plugins.hparams import api_pb2
from tensorboard.plugins.hparams import summary as hp_summary

METRICS = {"best_val_accuracy": "best validation accuracy", "best_val_loss": "best validation loss", "epochs": "epochs"}
STATUS = {
    "finished": api_pb2.STATUS_SUCCESS,
    "diverged": api_pb2.STATUS_FAILURE,
    "failed": api_pb2.STATUS_FAILURE,
    "stopped": api_pb2.STATUS_SUCCESS,
    "running": api_pb2.STATUS_RUNNING,
}


def _domain(parameter):
    kind = type(parameter).__name__
    if kind == "Float":
        return hp_api.RealInterval(float(parameter.min_value), float(parameter.max_value))
    if kind == "Int":
        return hp_api.IntInterval(int(parameter.min_value), int(parameter.max_value))
    if kind == "Choice":
        return hp_api.Discrete([v if isinstance(v, (int, float, bool)) else str(v) for v in parameter.values])
    return None


def experiment_parameters(hyperparameters):
    """HParams plugin parameters from a KerasTuner HyperParameters (declared space)."""
    return [hp_api.HParam(p.name, _domain(p)) for p in hyperparameters.space]


def write_experiment(log_dir, hyperparameters, metrics, extra=()):
    """The experiment summary, once, at the root: every hyperparameter with its domain, and the metrics."""
    params = experiment_parameters(hyperparameters) if isinstance(hyperparameters, keras_tuner.HyperParameters) else []
    params += list(extra)
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams_config(
            hparams=params, metrics=[hp_api.Metric(m, display_name=METRICS.get(m, m)) for m in metrics]
        )


def write_session(log_dir, trial_id, values, status, results):
    """One trial's session: its values, its final metrics and its status, in the trial's TensorBoard folder."""
    clean = {k: (v if isinstance(v, (int, float, bool)) else str(v)) for k, v in values.items()}
    with tf.summary.create_file_writer(str(log_dir)).as_default():
        hp_api.hparams(clean, trial_id=str(trial_id))
        for metric in METRICS:
            value = results.get(metric)
            if value not in (None, ""):
                tf.summary.scalar(metric, float(value), step=0)
        end = hp_summary.session_end_pb(STATUS.get(status, api_pb2.STATUS_UNKNOWN))
        tf.summary.experimental.write_raw_pb(end.SerializeToString(), step=0)
