"""Printing metrics as a table and writing them as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..data.formats import PathLike


def _plain(value: Any) -> Any:
    """JSON-ready copy: numpy scalars and arrays to Python, NaN/inf to None, mapping keys to strings."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    return value


def save_metrics(metrics: Mapping[str, Any], path: PathLike) -> None:
    """Write metrics as indented JSON (undefined values as ``null``), creating the parent folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as file:
        json.dump(_plain(metrics), file, indent=2, allow_nan=False)
        file.write("\n")


def _cell(value: Any) -> str:
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return "-" if not math.isfinite(value) else f"{100 * value:.2f}"
    return str(value)


def format_metrics(metrics: Mapping[str, Any], title: str | None = None) -> str:
    """Text table of metrics: fractions shown as percentages with two decimals, counts as integers.

    Nested per-class mappings (e.g. ``per_class``) become a second table with one row per class.
    """
    lines = [title] if title else []
    scalars = {k: v for k, v in metrics.items() if not isinstance(v, Mapping)}
    if scalars:
        width = max(len(str(k)) for k in scalars)
        lines += [f"{str(k).ljust(width)}  {_cell(v)}" for k, v in scalars.items()]
    for key, table in metrics.items():
        if not isinstance(table, Mapping) or not table:
            continue
        rows = {str(name): row if isinstance(row, Mapping) else {"value": row} for name, row in table.items()}
        columns = list(dict.fromkeys(column for row in rows.values() for column in row))
        cells = [[name] + [_cell(row.get(c, "")) for c in columns] for name, row in rows.items()]
        header = [key] + columns
        widths = [max(len(r[i]) for r in cells + [header]) for i in range(len(header))]
        lines.append("")
        lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)
