"""Progress a person can read: a live line in a terminal, timed lines elsewhere, the data-loading line."""

import io

import keras_cnn
from keras_cnn.console import ProgressLine
from keras_cnn.training import progress

from conftest import mnist_config


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_live_line_with_steps_eta_and_speed(mnist_small, tmp_path):
    stream = Terminal()
    keras_cnn.train(
        mnist_config(mnist_small, tmp_path, "run.epochs=2", "data.batch_size=32"),
        callbacks=[progress.Progress(1, stream=stream)],
        verbose=0,
    )
    text = stream.getvalue()
    assert "\repoch 1/2 1/16 [" in text and "\repoch 2/2 16/16 [" in text
    assert "ETA" in text and "img/s" in text and "loss" in text
    assert "mlp: 101,770 parameters, input 28x28x1, 10 classes; 540 training / 60 validation images" in text


def test_a_log_gets_a_line_at_most_every_interval(mnist_small, tmp_path, monkeypatch):
    stream = io.StringIO()
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)  # every call, so the test sees the form
    keras_cnn.train(
        mnist_config(mnist_small, tmp_path, "run.epochs=1", "data.batch_size=32"),
        callbacks=[progress.Progress(1, stream=stream)],
        verbose=0,
    )
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    assert any(line.startswith("epoch 1/1 step 16/16 ETA 0:00 loss") for line in lines), lines
    quiet = io.StringIO()
    keras_cnn.train(
        mnist_config(mnist_small, tmp_path / "q", "run.epochs=1"),
        callbacks=[progress.Progress(0, stream=quiet)],
        verbose=0,
    )
    assert quiet.getvalue() == ""


def test_the_data_loading_line_counts_rate_and_eta():
    stream = Terminal()
    line = ProgressLine("decoding x", 1000, stream=stream)
    line.update(250)
    assert "decoding x: 250/1,000 (25%)" in stream.getvalue() and "ETA" in stream.getvalue()
    logged = io.StringIO()
    line = ProgressLine("decoding x", 1000, stream=logged, interval=0.0)
    line.update(500)
    line.close()
    assert logged.getvalue().splitlines()[0].startswith("decoding x: 500/1,000 (50%)")
