"""Reading and writing checkpoint weights, and the one place where transformers' key layouts are mapped to ours.

Our module tree uses the names of the checkpoint files that transformers writes (and that the official
``facebook/mask2former-*`` repositories hold), so a file written by transformers needs only the known extras removed;
which keys those are is each backbone's business (its ``CheckpointRules`` in ``modeling/backbones/``).
``to_native_layout`` and ``to_file_layout`` are pure functions over state dicts; the rest reads and writes files.
The original (detectron2) layout is mapped in ``io/original.py``.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from mask2former.modeling.backbones.registry import backbone_entry

SAFE_WEIGHTS_NAME = "model.safetensors"
SAFE_WEIGHTS_INDEX_NAME = "model.safetensors.index.json"
TORCH_WEIGHTS_NAME = "pytorch_model.bin"

_BACKBONE = "model.pixel_level_module.encoder."  # each backbone's extras and renamings: its CheckpointRules


class CheckpointMismatchError(RuntimeError):
    """The checkpoint's tensors do not fit the model built from its config."""


@dataclass
class LoadReport:
    """What happened to each checkpoint key when loading: used for messages and by tests."""

    ignored_known_extras: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)


def to_native_layout(state_dict: Mapping[str, Tensor], backbone_type: str) -> tuple[dict[str, Tensor], list[str]]:
    """Map a checkpoint's keys to our module names. Returns (converted state dict, known extra keys dropped).

    Accepts the file layout of transformers 4 and 5 (also what the official hub repositories hold) and the in-memory
    layout of transformers 5; backbone keys go through the key rules of ``backbone_type`` (e.g. ``"swin"``). Keys
    without a prefix ``model.`` for a bare ``Mask2FormerModel`` are handled by the caller.
    """
    native_name = backbone_entry(backbone_type).rules.native_name
    converted: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, tensor in state_dict.items():
        if key.startswith(_BACKBONE):
            name = native_name(key[len(_BACKBONE):])
            if name is None:
                dropped.append(key)
                continue
            key = _BACKBONE + name
        converted[key] = tensor
    return converted, dropped


def to_file_layout(state_dict: Mapping[str, Tensor], *, backbone_config: Any, num_labels: int | None,
                   no_object_weight: float | None, prefix: str = "model.") -> dict[str, Tensor]:
    """Our state dict as transformers 5 expects its file: adds the keys it wants but we do not use.

    The backbone's ``file_extras`` (e.g. Swin's unused ``swin.layernorm``) and, when the model has no criterion yet,
    ``criterion.empty_weight`` (ones, last entry ``no_object_weight``) are added if absent.
    """
    out = {key: tensor.detach().contiguous() for key, tensor in state_dict.items()}
    backbone = prefix + _BACKBONE[len("model."):]
    own = {key[len(backbone):]: tensor for key, tensor in out.items() if key.startswith(backbone)}
    if own:
        extras = backbone_entry(backbone_config.model_type).rules.file_extras(backbone_config, own)
        for key, tensor in extras.items():
            out.setdefault(backbone + key, tensor)
    if num_labels is not None and no_object_weight is not None and "class_predictor.weight" in out:
        empty_weight = torch.ones(num_labels + 1)
        empty_weight[-1] = no_object_weight
        out.setdefault("criterion.empty_weight", empty_weight)
    return out


# --- files ----------------------------------------------------------------------------------------------------------


def read_weights_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read one ``.safetensors`` or PyTorch pickle (``weights_only=True``) file into a CPU state dict."""
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointMismatchError(
            f"Could not read weights from {path}: {err}. The file is corrupt or not a checkpoint; download it again."
        ) from err
    if isinstance(loaded, dict) and "state_dict" in loaded and isinstance(loaded["state_dict"], dict):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, dict) or not all(isinstance(v, Tensor) for v in loaded.values()):
        raise CheckpointMismatchError(f"{path} does not hold a state dict of tensors.")
    return dict(loaded)


def read_checkpoint_weights(path_or_hub_id: str | os.PathLike[str], **hub_kwargs: Any) -> dict[str, Tensor]:
    """All weights of a checkpoint directory or hub id: safetensors (single or sharded) first, then the .bin file.
    ``hub_kwargs``: those of ``hub.resolve_file`` (``subfolder``, ``revision``, ...)."""
    from mask2former.hub import CheckpointNotFoundError, resolve_file

    source = Path(path_or_hub_id)
    if source.is_file():
        return read_weights_file(source)
    single = resolve_file(path_or_hub_id, SAFE_WEIGHTS_NAME, required=False, **hub_kwargs)
    if single is not None:
        return read_weights_file(single)
    index = resolve_file(path_or_hub_id, SAFE_WEIGHTS_INDEX_NAME, required=False, **hub_kwargs)
    if index is not None:
        shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        weights: dict[str, Tensor] = {}
        for shard in shards:
            weights.update(read_weights_file(resolve_file(path_or_hub_id, shard, **hub_kwargs)))  # type: ignore[arg-type]
        return weights
    legacy = resolve_file(path_or_hub_id, TORCH_WEIGHTS_NAME, required=False, **hub_kwargs)
    if legacy is not None:
        return read_weights_file(legacy)
    raise CheckpointNotFoundError(
        f"{path_or_hub_id} holds no weights ({SAFE_WEIGHTS_NAME}, {SAFE_WEIGHTS_INDEX_NAME} or {TORCH_WEIGHTS_NAME})."
    )


def write_safetensors_atomically(tensors: Mapping[str, Tensor], path: str | os.PathLike[str]) -> None:
    """Write ``tensors`` to ``path`` through a temporary file in the same directory, so a crash leaves no half file."""
    from safetensors.torch import save_file

    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".safetensors", dir=path.parent)
    os.close(fd)
    try:
        save_file(dict(tensors), tmp, metadata={"format": "pt"})
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes the file private; give it ordinary permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- loading into a model -------------------------------------------------------------------------------------------


def load_into_model(model: nn.Module, state_dict: Mapping[str, Tensor], *, strict: bool = True,
                    ignore_mismatched_sizes: bool = False, ignored: list[str] | None = None) -> LoadReport:
    """Copy ``state_dict`` (already in our layout, see ``to_native_layout``) into ``model``; report misfits by name.

    With ``strict`` any missing or unexpected key raises ``CheckpointMismatchError``; a tensor of the wrong shape
    always raises unless ``ignore_mismatched_sizes`` (then that parameter keeps its fresh initialisation, as when a
    class head is replaced for a new label set).
    """
    converted = dict(state_dict)
    own = model.state_dict()
    report = LoadReport(ignored_known_extras=list(ignored or []))
    report.missing = sorted(set(own) - set(converted))
    report.unexpected = sorted(set(converted) - set(own))
    to_load: dict[str, Tensor] = {}
    for key, tensor in converted.items():
        if key not in own:
            continue
        if tuple(tensor.shape) != tuple(own[key].shape):
            report.mismatched.append((key, tuple(tensor.shape), tuple(own[key].shape)))
            continue
        to_load[key] = tensor
    problems = []
    if report.mismatched and not ignore_mismatched_sizes:
        problems.append("wrongly shaped tensors (checkpoint vs model): " + _listing(
            [f"{k} {tuple(a)} vs {tuple(b)}" for k, a, b in report.mismatched]))
    if strict and report.missing:
        problems.append("missing from the checkpoint: " + _listing(report.missing))
    if strict and report.unexpected:
        problems.append("in the checkpoint but not in the model: " + _listing(report.unexpected))
    if problems:
        raise CheckpointMismatchError(
            "The checkpoint does not match the model built from its config; " + "; ".join(problems)
            + ". Check that config.json belongs to these weights; pass ignore_mismatched_sizes=True to replace a "
            "head of another size (e.g. a different number of labels)."
        )
    with torch.no_grad():
        for key, tensor in to_load.items():
            target = own[key]
            target.copy_(tensor.to(dtype=target.dtype))
    return report


def _listing(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f" and {len(keys) - limit} more" if len(keys) > limit else "")
