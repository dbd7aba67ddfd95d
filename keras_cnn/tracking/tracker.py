"""The training-time uploader: a run callback whose MLflow calls happen on a background thread.

Training hands each finished epoch's rows to a queue and goes on; one thread uploads them in
order. A failure (server down, slow past the bounded HTTP timeouts, a full artifact store) warns
once with the command that completes the upload later, and the thread stops trying. When the run
ends, the thread gets FINISH_WAIT seconds to drain (INTERRUPT_WAIT after Ctrl-C), never more.
"""

import logging
import queue
import threading
from collections.abc import Callable

from keras_cnn.tracking import mark_failed, recently_failed, resolve_uri, sync
from keras_cnn.tracking.session import describe
from keras_cnn.training.callbacks import RunCallback

log = logging.getLogger("keras_cnn")

FINISH_WAIT = 60.0  # seconds: the final upload includes the exported model
INTERRUPT_WAIT = 5.0


class MlflowTracker(RunCallback):
    """Logs the run it is given (set_run) to MLflow; see keras_cnn.tracking."""

    def __init__(self) -> None:
        super().__init__()
        self.jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self.thread: threading.Thread | None = None
        self.failure: str | None = None
        self.session = None
        self.uri = ""

    # ------------------------------------------------------------------ the callback's hooks

    def on_train_begin(self, logs=None):
        if not self.run.chief:  # one worker of several: the chief tracks the run
            return
        cfg = self.run.cfg
        self.uri = resolve_uri(cfg.run.tracking_uri, cfg.run.output_dir)
        if recently_failed(self.uri):  # this process already warned about this server
            return
        path = self.run.run_dir.path
        self.thread = threading.Thread(target=self._work, name="keras_cnn-tracking", daemon=True)
        self.thread.start()
        rows = [dict(r) for r in self.run.history]  # a resumed run's earlier epochs (the server may lack them)

        def begin():
            self.session, record = sync.open_run(path, self.uri, cfg.run.experiment)
            sync.start_run(self.session, record)
            self.session.log_history(rows)

        self._submit(begin)

    def on_epoch_end(self, epoch, logs=None):
        rows = [dict(r) for r in self.run.history]
        self._submit(lambda: self.session.log_history(rows))

    def on_run_end(self, status):
        """After the run's files are written (history, plots, model, runs.csv): upload the rest."""
        path, register = self.run.run_dir.path, self.run.cfg.run.register
        done: dict = {}
        self._submit(
            lambda: done.update(
                sync.sync_run(path, self.uri, experiment=self.run.cfg.run.experiment, register=register)
            )
        )
        self._drain(FINISH_WAIT)
        if done and self.failure is None:
            registered = f", model registered as {register}" if register else ""
            log.info("Tracked as MLflow run %s at %s%s.", done["run_id"], self.uri, registered)

    def on_run_interrupted(self, status):
        """The run stopped on a signal or an error: the MLflow run says so (KILLED or FAILED), briefly."""
        self._submit(lambda: self.session and self.session.end(status))
        self._drain(INTERRUPT_WAIT)

    # ------------------------------------------------------------------ the thread

    def _submit(self, job: Callable[[], None]) -> None:
        if self.thread is not None and self.failure is None:
            self.jobs.put(job)

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            if self.failure is not None:
                continue
            try:
                job()
            except Exception as err:  # anything the server, the network or the store does: never the run's problem
                self.failure = describe(err)
                mark_failed(self.uri)
                log.warning(
                    "warning: MLflow tracking at %s failed (%s); training goes on untracked. "
                    "Upload the run later with: python scripts/track.py sync %s",
                    self.uri,
                    self.failure,
                    self.run.run_dir.path,
                )

    def _drain(self, seconds: float) -> None:
        if self.thread is None:
            return
        self.jobs.put(None)
        self.thread.join(seconds)
        if self.thread.is_alive() and self.failure is None:
            log.warning(
                "warning: the MLflow upload to %s did not finish within %.0f s; "
                "complete it with: python scripts/track.py sync %s",
                self.uri,
                seconds,
                self.run.run_dir.path,
            )
        self.thread = None
