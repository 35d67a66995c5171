"""Original checkpoint -> our model (``from_original_checkpoint``) -> our checkpoint directory (``mask2former
convert``), which transformers loads too.

The config comes from, in this order: what the caller passes (a preset name, a ``config.json`` path, a
``Mask2FormerConfig``), the zoo preset whose released file has this name, or the tensor shapes themselves.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mask2former.config import ConfigError, Mask2FormerConfig
from mask2former.io.checkpoint import CheckpointMismatchError, LoadReport, load_into_model
from mask2former.io.original import (
    OriginalCheckpointError,
    infer_config_kwargs,
    original_to_native,
    read_original_weights,
)
from mask2former.io.zoo import ZooEntry, config_kwargs, id2label_for, preset, preset_for_file, processor_kwargs


@dataclass
class OriginalConfig:
    config: Mask2FormerConfig
    entry: ZooEntry | None  # the zoo preset used, if any
    source: str  # how the config was chosen, for messages


def resolve_config(path: str | os.PathLike[str], weights: dict[str, torch.Tensor],
                   config: Mask2FormerConfig | str | os.PathLike[str] | None) -> OriginalConfig:
    """The config to build for the original checkpoint at ``path`` (see the module docstring)."""
    if isinstance(config, Mask2FormerConfig):
        return OriginalConfig(config, None, "the given config")
    if config is not None:
        name = str(config)
        if Path(name).is_file():
            return OriginalConfig(Mask2FormerConfig.from_json_file(name), None, f"config file {name}")
        try:
            entry = preset(name)
        except KeyError as err:
            raise ConfigError(f"--config {name!r} is neither a file nor a preset; {err.args[0]}") from None
        return OriginalConfig(Mask2FormerConfig(**config_kwargs(entry)), entry, f"preset {entry.name}")
    entry = preset_for_file(path)
    if entry is not None:
        return OriginalConfig(Mask2FormerConfig(**config_kwargs(entry)), entry,
                              f"preset {entry.name} (recognised by the file name {entry.file})")
    kwargs = infer_config_kwargs(weights)
    id2label = id2label_for(kwargs["num_labels"])
    if id2label is not None:
        kwargs["id2label"] = id2label
        del kwargs["num_labels"]
    return OriginalConfig(Mask2FormerConfig(**kwargs), None, "the tensor shapes (no preset matches the file name)")


def load_original(model_class: type, path: str | os.PathLike[str],
                  config: Mask2FormerConfig | str | os.PathLike[str] | None = None) -> tuple[nn.Module, OriginalConfig]:
    """Build ``model_class`` for the original checkpoint at ``path`` and load its weights; eval mode.

    Every model tensor must come from the file with the same shape and every file tensor must find a place (the
    derived ones excepted); otherwise ``CheckpointMismatchError`` names them, original name and ours.
    """
    weights = read_original_weights(path)
    chosen = resolve_config(path, weights, config)
    chosen.config.validate()
    converted = original_to_native(weights, chosen.config.backbone_config)
    model = model_class._without_pretrained_backbone(chosen.config)
    tensors, dropped = dict(converted.tensors), list(converted.dropped)
    if model_class.__name__ == "Mask2FormerModel":  # the body: the class head is not needed
        dropped += [converted.origin[k] for k in tensors if not k.startswith("model.")]
        tensors = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    own = model.state_dict()
    problems = []
    shapes = [f"{converted.origin.get(_full(k, model_class), k)} {tuple(v.shape)} -> {k} {tuple(own[k].shape)}"
              for k, v in tensors.items() if k in own and v.shape != own[k].shape]
    if shapes:
        problems.append(f"{len(shapes)} tensors differ in shape (file -> model): " + _listing(shapes))
    missing = [k for k in own if k not in tensors and k != "criterion.empty_weight"]
    if missing:
        problems.append(f"{len(missing)} model tensors are not in the file: " + _listing(missing))
    unexpected = [converted.origin.get(_full(k, model_class), k) for k in tensors if k not in own]
    if unexpected:
        problems.append(f"{len(unexpected)} file tensors have no place in the model: " + _listing(unexpected))
    if problems:
        raise CheckpointMismatchError(
            f"{path} does not fit the model built from {chosen.source}: " + "; ".join(problems)
            + ". Pass the preset or config.json that belongs to this file (--config / config=...)."
        )
    if "criterion.empty_weight" in own:
        tensors["criterion.empty_weight"] = own["criterion.empty_weight"]
    report: LoadReport = load_into_model(model, tensors, ignored=dropped)
    model.load_report = report  # type: ignore[attr-defined]
    return model.eval(), chosen


def _full(key: str, model_class: type) -> str:
    return f"model.{key}" if model_class.__name__ == "Mask2FormerModel" else key


def _listing(items: list[str], limit: int = 6) -> str:
    return ", ".join(items[:limit]) + (f" and {len(items) - limit} more" if len(items) > limit else "")


def convert_original_checkpoint(source: str | os.PathLike[str], output_dir: str | os.PathLike[str], *,
                                config: str | os.PathLike[str] | None = None,
                                overwrite: bool = False) -> dict[str, Any]:
    """Write ``config.json``, ``model.safetensors`` and ``preprocessor_config.json`` for an original checkpoint.

    Existing files of those names are replaced only with ``overwrite``. Returns a summary (paths, preset, counts).
    """
    from mask2former import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor

    output = Path(output_dir)
    names = ("config.json", "model.safetensors", "preprocessor_config.json")
    existing = [str(output / name) for name in names if (output / name).exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist; choose another --output-dir or pass --overwrite.")
    if output.exists() and not output.is_dir():
        raise NotADirectoryError(f"{output} exists and is not a directory.")
    model, chosen = load_original(Mask2FormerForUniversalSegmentation, source, config)
    processor = Mask2FormerImageProcessor(**processor_kwargs(chosen.entry), num_labels=chosen.config.num_labels)
    model.save_pretrained(output)
    processor.save_pretrained(output)
    return dict(
        output_dir=str(output),
        config_from=chosen.source,
        preset=chosen.entry.name if chosen.entry else None,
        backbone=chosen.config.backbone_config.model_type,
        num_labels=chosen.config.num_labels,
        num_queries=chosen.config.num_queries,
        parameters=model.num_parameters(),
        ignored=list(model.load_report.ignored_known_extras),
        test_size=processor.size,
    )


def summary_lines(summary: dict[str, Any]) -> list[str]:
    return [
        f"converted with the config from {summary['config_from']}",
        f"{summary['backbone']} backbone, {summary['num_labels']} classes, {summary['num_queries']} queries, "
        f"{summary['parameters']:,} parameters",
        f"not loaded (derived from other values): {len(summary['ignored'])} tensors",
        f"preprocessing: {json.dumps(summary['test_size'])}, ImageNet mean/std (RGB)",
        f"written: {summary['output_dir']}/config.json, model.safetensors, preprocessor_config.json",
    ]


__all__ = ["OriginalCheckpointError", "convert_original_checkpoint", "load_original", "resolve_config"]
