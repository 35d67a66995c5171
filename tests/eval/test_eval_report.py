"""Metric tables and JSON files."""

from __future__ import annotations

import json

import numpy as np

from mask2former.eval import format_metrics, save_metrics


def test_save_and_format(tmp_path):
    metrics = {
        "PQ": np.float64(0.5321),
        "num_classes": np.int64(3),
        "APl": float("nan"),
        "per_class": {1: {"PQ": 0.25, "TP": 4, "isthing": np.bool_(True), "name": "circle"}, 10: {"PQ": 1.0}},
    }
    path = tmp_path / "nested" / "metrics.json"
    save_metrics(metrics, path)
    loaded = json.loads(path.read_text())
    assert loaded == {
        "PQ": 0.5321,
        "num_classes": 3,
        "APl": None,
        "per_class": {"1": {"PQ": 0.25, "TP": 4, "isthing": True, "name": "circle"}, "10": {"PQ": 1.0}},
    }
    text = format_metrics(metrics, title="panoptic")
    lines = text.splitlines()
    assert lines[0] == "panoptic" and lines[1].split() == ["PQ", "53.21"] and lines[2].split() == ["num_classes", "3"]
    assert lines[3].split() == ["APl", "-"]
    assert lines[5].split() == ["per_class", "PQ", "TP", "isthing", "name"]
    assert lines[6].split() == ["1", "25.00", "4", "True", "circle"]
    assert lines[7].split() == ["10", "100.00"]
