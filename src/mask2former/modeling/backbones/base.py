"""What Mask2Former needs from a backbone, as data, and what every backbone file provides.

The contract: a backbone is an ``nn.Module`` whose ``forward(pixel_values (B, C, H, W))`` returns a list of feature
maps, finest first, and whose ``feature_info`` gives each map's channels and stride. The pixel decoder reads those
numbers and nothing else.

A backbone file (``swin.py``, ``resnet.py``, ...) holds three things, named by one row of ``registry.BACKBONES``:
its config class (transformers' ``config.json`` schema for that ``model_type``), a builder from that config to the
module, and its checkpoint key rules.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from torch import Tensor


@dataclass(frozen=True)
class FeatureInfo:
    """One backbone output: its channel count and its stride (reduction) relative to the input image."""

    channels: int
    stride: int


class Backbone(Protocol):
    """The module a builder returns."""

    feature_info: list[FeatureInfo]

    def __call__(self, pixel_values: Tensor) -> list[Tensor]:
        """(B, C, H, W) -> one (B, C_i, ceil(H / s_i), ceil(W / s_i)) map per ``feature_info`` entry."""
        ...


def _identity_name(key: str) -> str | None:
    return key


def _no_extras(config: Any, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {}


@dataclass
class OriginalWeights:
    """Tensors renamed from an original checkpoint: ``tensors`` under our names, ``origin`` the original name each
    came from (for messages), ``dropped`` the original names deliberately not loaded (derived buffers). An original
    key that no rule knows stays in ``tensors`` under its own name, so that loading reports it as unexpected."""

    tensors: dict[str, Tensor] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)

    def add(self, name: str, tensor: Tensor, original: str) -> None:
        self.tensors[name] = tensor
        self.origin[name] = original


@dataclass(frozen=True)
class CheckpointRules:
    """How one backbone's weights are named in files. Every key here is relative to the backbone (no
    ``model.pixel_level_module.encoder.`` prefix).

    ``native_name``: a file key (transformers 4/5 files, transformers 5's in-memory names) -> our key, or ``None`` for
    a known extra that carries nothing we use (dropped quietly).
    ``file_extras``: tensors transformers expects in a file but our modules do not hold (added when saving).
    ``from_original``: the original (detectron2) checkpoint's backbone tensors (keys without ``backbone.``) -> ours,
    as an ``OriginalWeights``. ``None`` when the original model zoo has no such backbone.
    """

    native_name: Callable[[str], str | None] = _identity_name
    file_extras: Callable[[Any, Mapping[str, Tensor]], dict[str, Tensor]] = _no_extras
    from_original: Callable[[Mapping[str, Tensor], Any], OriginalWeights] | None = None


def resolve_out_indices(out_features: list[str] | None, out_indices: list[int] | None, stage_names: list[str],
                        what: str) -> list[int]:
    """transformers' rule: ``out_features`` (stage names) or ``out_indices`` (positions in ``stage_names``), which
    must agree when both are given; neither means the last stage only."""
    if out_features is None and out_indices is None:
        return [len(stage_names) - 1]
    if out_features is not None:
        unknown = [name for name in out_features if name not in stage_names]
        if unknown:
            raise ValueError(f"{what} out_features {unknown} are not stage names; choose from {stage_names}.")
        from_features = [stage_names.index(name) for name in out_features]
        if out_indices is not None and [i % len(stage_names) for i in out_indices] != from_features:
            raise ValueError(f"{what} out_features {out_features} and out_indices {out_indices} disagree.")
        return from_features
    return [i % len(stage_names) for i in out_indices]  # type: ignore[union-attr]


class BackboneConfig:
    """Base of the backbone configs, in transformers' schema for their ``model_type``.

    A subclass names in ``fields`` the attributes ``to_dict`` writes (transformers' keys, ``out_features`` and
    ``out_indices`` included) and in ``derived`` the keys transformers writes that are recomputed from the others:
    those are dropped when read, never trusted. Any other key is kept in ``extra``, read as an attribute and
    written back unchanged. ``attribute_map`` gives transformers' other names of fields (read and assigned).
    """

    model_type: ClassVar[str] = ""
    fields: ClassVar[tuple[str, ...]] = ()
    derived: ClassVar[tuple[str, ...]] = ()
    attribute_map: ClassVar[dict[str, str]] = {}
    extra: dict[str, Any]

    def _keep_extra(self, kwargs: dict[str, Any]) -> None:
        for name in (*self.derived, "model_type"):
            kwargs.pop(name, None)
        self.extra = kwargs

    def __getattr__(self, name: str) -> Any:
        target = type(self).attribute_map.get(name)
        if target is not None:
            return getattr(self, target)
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(type(self).attribute_map.get(name, name), value)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], **overrides: Any) -> BackboneConfig:
        merged = {**data, **overrides}
        return cls(**{key: value for key, value in merged.items() if key != "model_type"})

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> BackboneConfig:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike[str], *, subfolder: str = "",
                        revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None,
                        local_files_only: bool = False, token: str | bool | None = None,
                        **overrides: Any) -> BackboneConfig:
        """This backbone's config from a ``config.json`` (a file, a directory or a hub id, as for
        ``Mask2FormerConfig.from_pretrained``): a backbone checkpoint's own, or the ``backbone_config`` of a
        Mask2Former checkpoint. ``overrides`` replace fields."""
        from mask2former.hub import resolve_file  # lazy: only hub ids need huggingface_hub

        source = Path(pretrained_model_name_or_path)
        path = source if source.is_file() else resolve_file(
            pretrained_model_name_or_path, "config.json", subfolder=subfolder, revision=revision,
            cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if data.get("model_type") == "mask2former" and isinstance(data.get("backbone_config"), dict):
            data = data["backbone_config"]
        found = data.get("model_type", cls.model_type)
        if found != cls.model_type:
            raise ValueError(f"{path} describes a {found!r} model, not a {cls.model_type!r} backbone; use the "
                             f"config class of {found!r} or point at a {cls.model_type!r} checkpoint.")
        return cls.from_dict(data, **overrides)

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json_string(), encoding="utf-8")

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> None:
        """Write ``config.json`` into ``save_directory`` (created if needed)."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.to_json_file(directory / "config.json")

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        for name in (*self.fields, *self.derived):
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        out["model_type"] = self.model_type
        return out

    def validate(self) -> None:
        """Raise ``ValueError`` naming the field whose value this backbone cannot be built from."""

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({json.dumps(self.to_dict(), sort_keys=True)})"


class StagedBackboneConfig(BackboneConfig):
    """A backbone of ``len(depths)`` stages after a stem, named ``stem, stage1, ...`` as in transformers;
    ``out_indices`` count from the stem (0)."""

    depths: list[int]
    out_indices: list[int]

    @property
    def stage_names(self) -> list[str]:
        return ["stem"] + [f"stage{i}" for i in range(1, len(self.depths) + 1)]

    @property
    def out_features(self) -> list[str]:
        return [self.stage_names[i] for i in self.out_indices]
