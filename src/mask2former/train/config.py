"""What a training run is: a YAML file and/or ``--set key=value`` overrides, read into plain dataclasses."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DATASET_FORMATS = ("coco_panoptic", "coco_instance", "semantic")


@dataclass
class DataSpec:
    """Where one split lives.

    format: ``coco_panoptic`` (images + panoptic JSON + PNG folder), ``coco_instance`` (images + instance JSON) or
        ``semantic`` (images folder + label PNG folder matched by file stem).
    images: image folder. annotations: the JSON file (COCO formats). masks: panoptic PNG or label PNG folder.
    reduce_labels: semantic only: label 0 becomes ignore, the others shift down by one (ADE20K style).
    class_names: semantic only: the class names in label-id order, or the path of a JSON file holding that list or
        an ``{id: name}`` mapping.
    """

    format: str
    images: str
    annotations: str | None = None
    masks: str | None = None
    reduce_labels: bool = False
    class_names: list[str] | str | None = None

    def __post_init__(self) -> None:
        if self.format not in DATASET_FORMATS:
            raise ValueError(f"data format {self.format!r} is not one of {', '.join(DATASET_FORMATS)}.")
        needs = {"coco_panoptic": ("annotations", "masks"), "coco_instance": ("annotations",),
                 "semantic": ("masks", "class_names")}
        missing = [name for name in needs[self.format] if getattr(self, name) is None]
        if missing:
            raise ValueError(f"{self.format} data needs {', '.join(missing)} as well as images.")

    def semantic_class_names(self) -> list[str]:
        """``class_names`` as a list, read from its JSON file when it is a path."""
        names = self.class_names
        if isinstance(names, str):
            if not Path(names).is_file():
                raise FileNotFoundError(f"{names}: no such file (class_names: a JSON list of names or {{id: name}}).")
            try:
                names = json.loads(Path(names).read_text(encoding="utf-8"))
            except ValueError as error:
                raise ValueError(f"{names} is not valid JSON ({error}); class_names needs a JSON list of names or "
                                 "{id: name}.") from None
        if isinstance(names, dict):
            names = [names[key] for key in sorted(names, key=int)]
        return [str(name) for name in names or []]


@dataclass
class TrainConfig:
    """Every setting of a run. Defaults follow the original recipe where it applies (SPEC §7), scaled to one machine."""

    output_dir: str = "outputs/train"
    train_data: DataSpec | None = None
    val_data: DataSpec | None = None
    task: str = "panoptic"  # what periodic evaluation measures: panoptic (PQ), instance (mask AP), semantic (mIoU)
    # model: start from a checkpoint (class head replaced when the label set differs) or from config fields
    init_checkpoint: str | None = None
    model: dict[str, Any] = field(default_factory=dict)
    # augmentation: "lsj" (large-scale jitter, COCO), "semantic" (shortest-edge jitter + crop, ADE20K), "none"
    augmentation: str = "lsj"
    crop_size: int = 512
    min_scale: float = 0.1
    max_scale: float = 2.0
    hflip: bool = True
    color_jitter: bool = False
    # optimisation
    batch_size: int = 2  # per process
    grad_accumulation: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.05
    backbone_lr_multiplier: float = 0.1
    max_steps: int = 1000
    warmup_steps: int = 0
    schedule: str = "poly"  # poly | step | constant
    poly_power: float = 0.9
    step_milestones: list[float] = field(default_factory=lambda: [0.9, 0.95])  # fractions of max_steps
    step_gamma: float = 0.1
    clip_grad_norm: float = 0.01  # on the full model; 0 disables
    amp: str = "none"  # none | bf16 | fp16
    gradient_checkpointing: bool = False
    # run
    seed: int = 0
    num_workers: int = 0
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    eval_every: int = 0  # steps; 0 = only at the end when val_data is set
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    max_unreadable_fraction: float = 0.01  # training files that fail to decode are skipped; above this share, stop
    progress: bool = True

    def __post_init__(self) -> None:
        from mask2former.field_types import check_field_types

        kinds = {f.name: f.type for f in dataclasses.fields(self)}
        check_field_types("training settings", self.__dict__, ints=[k for k, t in kinds.items() if t == "int"],
                          numbers=[k for k, t in kinds.items() if t == "float"],
                          bools=[k for k, t in kinds.items() if t == "bool"],
                          strings=[k for k, t in kinds.items() if t in ("str", "str | None")])
        if not isinstance(self.model, dict):
            raise ValueError(f"training settings: model must be a mapping of Mask2FormerConfig fields, got "
                             f"{self.model!r}.")
        for name in ("train_data", "val_data"):
            value = getattr(self, name)
            if isinstance(value, dict):
                known = {f.name for f in dataclasses.fields(DataSpec)}
                unknown = sorted(set(value) - known)
                if unknown:
                    raise ValueError(f"unknown {name} settings {unknown}; known: {', '.join(sorted(known))}.")
                if "format" not in value or "images" not in value:
                    raise ValueError(f"{name} needs format ({', '.join(DATASET_FORMATS)}) and images (a folder).")
                setattr(self, name, DataSpec(**value))
            elif value is not None and not isinstance(value, DataSpec):
                raise ValueError(f"{name} must be a mapping (format, images, annotations, masks), got {value!r}.")
        choices = {"task": ("panoptic", "instance", "semantic"), "augmentation": ("lsj", "semantic", "none"),
                   "schedule": ("poly", "step", "constant"), "amp": ("none", "bf16", "fp16"),
                   "device": ("auto", "cpu", "cuda")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r} is not one of {', '.join(allowed)}.")
        positive = ("batch_size", "grad_accumulation", "max_steps", "crop_size", "checkpoint_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}.")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _one_line(error: Exception) -> str:
    """A parser's message on one line, without PyYAML's name for the text it was given."""
    return " ".join(str(error).replace('in "<unicode string>", ', "").split())


def _parse_value(text: str) -> Any:
    """``--set`` values: JSON when it parses (numbers, booleans, null, lists, objects), else the plain string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def load_train_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML (or JSON) run file, then apply ``key=value`` overrides (dotted keys reach into sections)."""
    data: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"{path}: no such run file (--config); see docs/finetuning.md for the format.")
        text = Path(path).read_text(encoding="utf-8")
        try:
            if str(path).endswith(".json"):
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text) or {}
        except Exception as error:  # yaml.YAMLError or json.JSONDecodeError: the file, the line, the problem
            raise ValueError(f"{path} is not valid {'JSON' if str(path).endswith('.json') else 'YAML'}: "
                             f"{_one_line(error)}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} must hold a mapping of settings, got {type(data).__name__}.")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value (e.g. lr=2e-4 or train_data.images=dir).")
        key, value = item.split("=", 1)
        target = data
        *parents, last = key.split(".")
        for part in parents:
            target = target.setdefault(part, {})
            if not isinstance(target, dict):
                raise ValueError(f"override {item!r}: {part} is not a section of settings.")
        target[last] = _parse_value(value)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown training settings {unknown}; known: {', '.join(sorted(known))}.")
    return TrainConfig(**data)
