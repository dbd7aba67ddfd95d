"""SIGINT and SIGTERM as a request to stop at the next safe point, not an exception anywhere.

    with handle_signals():          # installed in the main thread only; restored afterwards
        ...                         # the training loop polls stop_requested() after each compiled call

The first signal asks the loop to finish its current compiled call, write a checkpoint and raise
keras_cnn.errors.Interrupted; a second SIGINT or SIGTERM exits at once (status 130 / 143).
Nested `handle_signals()` blocks share one request.
"""

import concurrent.futures
import contextlib
import os
import signal
import sys
import threading

from keras_cnn.errors import Interrupted

_requested = None
_depth = 0
# What the first signal's line promises; the innermost block's words (training: a checkpoint).
GENERIC = "stopping at the next safe point"
_promise = GENERIC


def stop_requested():
    """The signal number of a pending stop request, or None."""
    return _requested


def raise_if_requested(where, advice=None):
    if _requested is not None:
        raise Interrupted(_requested, where, advice)


def _handler(signum, frame):
    global _requested
    if _requested is not None:  # the second signal: the user means it
        sys.stderr.write("\ninterrupted again: exiting now\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    _requested = signum
    sys.stderr.write(f"\n{signal.Signals(signum).name} received: {_promise} (press Ctrl-C again to quit at once)\n")
    sys.stderr.flush()


@contextlib.contextmanager
def handle_signals(promise=None):
    """Route SIGINT/SIGTERM to a stop request for the block (a no-op outside the main thread).
    `promise`: what the first signal's line says will happen (default GENERIC)."""
    global _requested, _depth, _promise
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    outer_promise = _promise
    _promise = promise or outer_promise
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if _depth == 0:
        _requested = None
    # Installed on every entry, nested ones too: TensorFlow's MultiWorkerMirroredStrategy sets a C-level
    # SIGTERM handler (for its preemption support) that bypasses Python's while getsignal still reports
    # ours; train() enters here after creating its strategy, which puts ours back.
    for s in previous:
        signal.signal(s, _handler)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        _promise = outer_promise
        if _depth == 0:
            for s, h in previous.items():
                signal.signal(s, h)
            _requested = None


_executor = None


def call_responsively(fn, *args):
    """fn(*args) on a helper thread while the main thread waits in short, interruptible slices.

    Python runs signal handlers only in the main thread and only between bytecodes: while the
    main thread sits inside a long TensorFlow call (a compiled call can last minutes), a Ctrl-C
    would go unanswered, and a second one could not exit at once. TensorFlow releases the GIL
    while it computes, so the waiting main thread answers a signal within ~0.2 s.
    """
    global _executor
    if threading.current_thread() is not threading.main_thread():
        return fn(*args)
    if _executor is None:
        _executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="keras_cnn-call")
    future = _executor.submit(fn, *args)
    while True:
        try:
            return future.result(timeout=0.2)
        except concurrent.futures.TimeoutError:
            continue
