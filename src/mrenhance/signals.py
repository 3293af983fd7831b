"""The signal policy: SIGTERM is handled like SIGINT (Ctrl-C).

``kill``, ``timeout``, SLURM (``scancel``, the time limit) and Kubernetes stop a job with
SIGTERM; Python's default is to die on the spot, skipping every ``finally``. Under
:func:`handle_signals` (the CLI installs it) both signals raise :class:`Interrupted`, a
``KeyboardInterrupt``, so the same clean-up runs for both:

- a file being written is abandoned: :func:`mrenhance.io.atomic.atomic_path` deletes its
  temp file and the destination keeps its old content (or stays absent);
- a batch (``enhance`` of several inputs) stops where it is and its ``--summary`` lists
  the files done, the one interrupted and the ones not started;
- training stops; its last checkpoint is complete and ``--resume`` continues from it;
- the command prints one line, ``mrenhance: interrupted by SIGTERM ...``, and exits
  **130** for SIGINT and **143** for SIGTERM (128 + the signal number, as shells report).

The few steps that must not be cut in half (creating and locking a temp file, the rename
that publishes it, removing it) run under :func:`deferred`: a signal that arrives there is
held and raised right after. SIGKILL cannot be handled; the atomic writes make it safe
(``docs/reliability.md``).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

__all__ = ["EXIT_CODES", "Interrupted", "deferred", "handle_signals"]

#: exit code per signal: 128 + the signal number
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}

_state = {"depth": 0, "pending": None}


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread on SIGINT or SIGTERM while :func:`handle_signals` is on."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        self.exit_code = EXIT_CODES.get(signum, 128 + int(signum))
        super().__init__(self.signal_name)


def _handler(signum: int, frame: Any) -> None:
    if _state["depth"] > 0:
        _state["pending"] = signum  # raised when the critical step ends
        return
    raise Interrupted(signum)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise :class:`Interrupted` inside the block (main thread only;
    elsewhere, and for the block's end, the previous handlers are kept or restored)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in EXIT_CODES}
    for s in EXIT_CODES:
        signal.signal(s, _handler)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM for a step that must not be cut in half; raise after it."""
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0 and _state["pending"] is not None:
            signum, _state["pending"] = _state["pending"], None
            raise Interrupted(signum)
