"""Shared pieces of the benchmark scripts: official-size configs, identical weights in both libraries, timing."""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch

SWIN = {
    "swin-tiny": dict(embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "swin-small": dict(embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "swin-base": dict(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
    "swin-large": dict(embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12),
}


def config_kwargs(size: str, num_labels: int = 133) -> dict[str, Any]:
    backbone = dict(SWIN[size], drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    return dict(backbone_config=backbone, num_labels=num_labels, num_queries=200 if size == "swin-large" else 100)


def same_weights_pair(size: str, seed: int = 0):
    """(ours, transformers') segmentation models of an official size holding identical random weights, eval mode."""
    import transformers

    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    torch.manual_seed(seed)
    ours = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(size))).eval()
    with tempfile.TemporaryDirectory() as tmp:
        ours.save_pretrained(tmp)
        ref = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(tmp).eval()
    return ours, ref


def time_call(fn: Callable[[], Any], repeat: int = 3, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeat`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(fns: dict[str, Callable[[], Any]], repeat: int = 5, warmup: int = 1) -> dict[str, list[float]]:
    """Wall times in seconds of each function, run in turn (order rotated every round) so load hits all alike."""
    names = list(fns)
    for _ in range(warmup):
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[: round_ % len(names)]:
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fns[name]()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return times


def ratio_summary(ours: list[float], theirs: list[float]) -> tuple[float, float, float]:
    """(median ours, median theirs, median of the per-round ratios ours / theirs)."""
    return statistics.median(ours), statistics.median(theirs), statistics.median(a / b for a, b in zip(ours, theirs))


_MMAP_THRESHOLD, _TRIM_THRESHOLD = -3, -1  # glibc mallopt parameters (malloc.h: M_MMAP_THRESHOLD, M_TRIM_THRESHOLD)


DEFAULT_ALLOCATOR = "allocator: as the system sets it"


def allocator_setting(steady: bool) -> str:
    """:func:`steady_allocator` when ``steady``, else nothing changed; either way the line that says which."""
    return steady_allocator() if steady else DEFAULT_ALLOCATOR


def steady_allocator(mmap_threshold: int = 64 << 20) -> str:
    """Make glibc serve allocations below ``mmap_threshold`` from its heap and keep freed heap memory; a line saying so.

    By default glibc maps every block over 128 KB afresh, so each new multi-megabyte array is paged in one 4 KB
    fault at a time, until a freed block raises that limit for the rest of the process. Then the same code runs
    faster: transformers' preprocessing of one photo measured 28-36 ms in a fresh process and 22-24 ms once its
    10 MB arrays come from the heap. Timings would depend on what ran before in the process; this fixes the
    state both libraries run in, the one where transformers is fastest. Without glibc (other C libraries, other
    systems) nothing changes.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return f"{DEFAULT_ALLOCATOR} (no glibc mallopt)"
    if not (mallopt(_MMAP_THRESHOLD, mmap_threshold) and mallopt(_TRIM_THRESHOLD, 2 * mmap_threshold)):
        return f"{DEFAULT_ALLOCATOR} (mallopt refused)"
    return f"allocator: glibc heap for blocks up to {mmap_threshold >> 20} MB (M_MMAP_THRESHOLD), freed memory kept"


def load_line() -> str:
    import os

    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def machine_line() -> str:
    import transformers

    device = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.processor() or platform.machine()
    return (f"{device}; torch {torch.__version__} ({torch.get_num_threads()} threads); transformers "
            f"{transformers.__version__}; python {platform.python_version()}")


def write_result(path: Path | None, text: str) -> None:
    print(text)
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
