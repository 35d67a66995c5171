"""Training checkpoints: written atomically, holding everything an exact resume needs.

``<output_dir>/checkpoints/step_<N>/`` holds the model (``save_pretrained`` format, usable on its own) and
``training_state.pt`` (optimizer, scheduler, step, RNG states). The directory is assembled under a temporary name and
renamed into place, and ``latest`` (a one-line file) is replaced atomically after it, so a run killed at any moment
leaves only complete checkpoints.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_NAME = "training_state.pt"


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(output_dir: Path, step: int, model: Any, optimizer: torch.optim.Optimizer,
                    scheduler: Any, rng_states: list[dict[str, Any]], keep: int = 2) -> Path:
    """Write checkpoint ``step`` atomically; keep the newest ``keep`` checkpoints. Returns its directory.

    ``rng_states`` holds one ``rng_state()`` per process, indexed by rank.
    """
    root = output_dir / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step_{step:08d}"
    tmp = root / f".tmp_step_{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng_per_process": rng_states}, tmp / STATE_NAME)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    pointer = root / ".latest.tmp"
    pointer.write_text(final.name + "\n")
    os.replace(pointer, root / "latest")
    for old in sorted(p for p in root.glob("step_*") if p.is_dir())[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(output_dir: Path) -> Path | None:
    pointer = output_dir / "checkpoints" / "latest"
    if not pointer.is_file():
        return None
    path = output_dir / "checkpoints" / pointer.read_text().strip()
    return path if (path / STATE_NAME).is_file() else None


def load_training_state(path: Path) -> dict[str, Any]:
    # the state holds numpy RNG state and python objects, which weights_only loading refuses; it is our own file
    return torch.load(path / STATE_NAME, map_location="cpu", weights_only=False)
