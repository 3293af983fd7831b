"""``metrics.csv`` (and TensorBoard scalars when it imports) and plain-JSON settings."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mrenhance.io.atomic import write_text_atomic

__all__ = ["MetricsLog", "plain", "to_json"]


class MetricsLog:
    """``metrics.csv`` appended and fsynced row by row; rewritten atomically when columns
    are added or on resume (``keep`` drops the rows logged after the checkpoint).

    Parameters
    ----------
    run_dir: folder of ``metrics.csv`` (and ``tensorboard/``). columns: the first columns.
    enabled: False on every rank but 0 (nothing is written). keep: on resume, which old
    rows to keep. x_key: the column used as TensorBoard's step (default ``step``).
    """

    def __init__(
        self,
        run_dir: Path,
        columns: list[str],
        enabled: bool,
        keep: Callable[[dict[str, str]], bool] | None,
        x_key: str = "step",
    ) -> None:
        self.path = run_dir / "metrics.csv"
        self.columns = list(columns)
        self.enabled = enabled
        self.x_key = x_key
        self.tb: Any = None
        if not enabled:
            return
        rows: list[dict[str, str]] = []
        if keep is not None and self.path.exists():
            with open(self.path, newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                self.columns += [c for c in reader.fieldnames or [] if c not in self.columns]
                rows = [r for r in reader if keep(r)]
        self._rewrite(rows)
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional: tensorboard is not a dependency
            self.tb = None
        else:
            self.tb = SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            writer.writerow({c: r.get(c, "") for c in self.columns})
        write_text_atomic(self.path, buf.getvalue(), overwrite=True)

    def append(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        text = {k: _fmt(v) for k, v in row.items()}
        new = [k for k in text if k not in self.columns]
        if new:
            with open(self.path, newline="", encoding="utf-8") as fh:
                old = list(csv.DictReader(fh))
            self.columns += new
            self._rewrite([*old, text])
        else:
            buf = io.StringIO()
            csv.DictWriter(buf, fieldnames=self.columns, lineterminator="\n").writerow(
                {c: text.get(c, "") for c in self.columns}
            )
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
        if self.tb is not None:
            x = int(row.get(self.x_key, row["step"]))
            for k, v in row.items():
                if k not in ("step", self.x_key) and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, x)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return format(v, ".8g")
    return str(v)


def plain(value: Any) -> Any:
    """``value`` as JSON types: dataclasses and mappings to dicts, tuples to lists,
    paths to strings; anything else (a custom loss, say) by its ``__name__`` or type."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return getattr(value, "__name__", type(value).__name__)


def to_json(value: Any) -> str:
    """Indented plain JSON of ``value`` with a final newline."""
    return json.dumps(plain(value), indent=2) + "\n"
