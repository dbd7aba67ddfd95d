"""One progress line for long steps outside training (decoding a dataset): count, rate and ETA, live
in a terminal, at most one line every `interval` seconds elsewhere (logs, notebooks, CI)."""

import sys
import time


def format_duration(seconds):
    seconds = max(int(seconds), 0)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


class ProgressLine:
    def __init__(self, label, total, *, stream=None, interval=30.0, enabled=True):
        self.label, self.total, self.enabled = label, total, enabled
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.interval = interval
        self.started = self.last = time.perf_counter()
        self.done = 0

    def text(self):
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        rate = self.done / elapsed
        eta = (self.total - self.done) / rate if rate else 0.0
        return (
            f"{self.label}: {self.done:,}/{self.total:,} ({self.done / max(self.total, 1):.0%}) "
            f"{rate:,.0f}/s ETA {format_duration(eta)}"
        )

    def update(self, done):
        self.done = done
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.text() + "   ")
            self.stream.flush()
        elif now - self.last >= self.interval:
            self.last = now
            self.stream.write(self.text() + "\n")
            self.stream.flush()

    def close(self):
        if self.enabled and (self.tty or time.perf_counter() - self.started >= self.interval):
            elapsed = time.perf_counter() - self.started
            self.stream.write(
                ("\r" if self.tty else "")
                + f"{self.label}: {self.done:,} in {format_duration(elapsed)}"
                + (" " * 20 if self.tty else "")
                + "\n"
            )
            self.stream.flush()
