"""Configuration objects that read and write transformers' ``config.json`` schema for Mask2Former.

``Mask2FormerConfig`` is the flat public schema users know from transformers. It holds numbers only; turning it into
modules happens in one place, ``mask2former.modeling.builder``. Keys we do not use (hub configs carry many) are kept
verbatim so that a config loaded and saved again loses nothing.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mask2former.modeling.backbones.base import BackboneConfig

from mask2former.version import VERSION_KEY, version_record

CONFIG_NAME = "config.json"

# What our modules implement: the transformer decoder's FFN.
_DECODER_ACTIVATIONS = ("relu", "gelu", "silu")


class ConfigError(ValueError):
    """A configuration value that this library cannot build a model from."""


# The backbone config classes live with their backbones (modeling/backbones/, one row each in its registry); they
# are imported on first use so that reading a config does not load the modules.
_BACKBONE_CLASSES = {"SwinConfig": "swin", "ResNetConfig": "resnet", "TimmBackboneConfig": "timm_backbone"}


def __getattr__(name: str) -> Any:
    if name in _BACKBONE_CLASSES:
        return _backbone_entry(_BACKBONE_CLASSES[name]).config_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _backbone_entry(model_type: str) -> Any:
    from mask2former.modeling.backbones.registry import BACKBONES

    if model_type not in BACKBONES:
        raise ConfigError(
            f"Backbone type {model_type!r} is not supported; mask2former supports: {', '.join(BACKBONES)}. Use a "
            "checkpoint or a backbone_config of one of these types."
        )
    return BACKBONES[model_type]


def _default_backbone_config() -> BackboneConfig:
    return _backbone_entry("swin").config_class(
        embed_dim=96,
        depths=[2, 2, 18, 2],
        num_heads=[3, 6, 12, 24],
        window_size=7,
        drop_path_rate=0.3,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )


def backbone_config_from_dict(data: dict[str, Any]) -> BackboneConfig:
    """Build the backbone config named by ``data['model_type']`` (``swin`` when absent)."""
    try:
        return _backbone_entry(data.get("model_type", "swin")).config_class.from_dict(data)
    except ConfigError:
        raise
    except ValueError as err:
        raise ConfigError(f"backbone_config: {err}") from err


def _check_types(values: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Raise ``ConfigError`` naming the field whose value has the wrong type (config.json is user-editable)."""
    from mask2former.field_types import check_field_types

    try:
        check_field_types(
            "Mask2Former config", {**values, **kwargs},
            ints=("feature_size", "mask_feature_size", "hidden_dim", "encoder_feedforward_dim", "encoder_layers",
                  "decoder_layers", "num_attention_heads", "dim_feedforward", "common_stride", "ignore_value",
                  "num_queries", "train_num_points", "num_labels"),
            numbers=("dropout", "no_object_weight", "class_weight", "mask_weight", "dice_weight", "oversample_ratio",
                     "importance_sample_ratio", "init_std", "init_xavier_std"),
            bools=("pre_norm", "enforce_input_projection", "use_auxiliary_loss", "use_pretrained_backbone",
                   "use_timm_backbone"),
            int_lists=("feature_strides",), strings=("activation_function", "backbone"))
    except ValueError as err:
        raise ConfigError(str(err)) from None
    for name in ("id2label", "label2id"):
        if kwargs.get(name) is not None and not isinstance(kwargs[name], Mapping):
            example = '{"0": "cat", "1": "dog"}' if name == "id2label" else '{"cat": 0, "dog": 1}'
            raise ConfigError(f"Mask2Former config: {name} must map class ids to names, e.g. {example}, got a "
                              f"{type(kwargs[name]).__name__}.")


# Keys transformers' PretrainedConfig writes for every model; we keep them as plain attributes.
_COMMON_KEYS = ("output_hidden_states", "output_attentions", "return_dict")

# transformers' generic names for two fields (its ``attribute_map``): read, written and accepted as arguments.
ATTRIBUTE_MAP = {"hidden_size": "hidden_dim", "num_hidden_layers": "decoder_layers"}


def _alias(field: str) -> property:
    """A read-write attribute that is another name of ``field`` (an ``ATTRIBUTE_MAP`` entry)."""
    return property(lambda self: getattr(self, field), lambda self, value: setattr(self, field, value),
                    doc=f"Another name of ``{field}`` (transformers' ``attribute_map``).")


class Mask2FormerConfig:
    """Every hyper-parameter of a Mask2Former model, with transformers' names and defaults.

    ``num_labels``/``id2label``/``label2id`` describe the classes (the class head predicts ``num_labels + 1`` logits,
    the last one being "no object"). Unknown keyword arguments are stored in ``extra``, read as attributes and
    written back unchanged. ``hidden_size`` and ``num_hidden_layers`` are other names of ``hidden_dim`` and
    ``decoder_layers`` (``ATTRIBUTE_MAP``), as in transformers.
    """

    model_type = "mask2former"
    attribute_map = ATTRIBUTE_MAP

    def __init__(
        self,
        backbone_config: BackboneConfig | dict[str, Any] | None = None,
        feature_size: int = 256,
        mask_feature_size: int = 256,
        hidden_dim: int = 256,
        encoder_feedforward_dim: int = 1024,
        activation_function: str = "relu",
        encoder_layers: int = 6,
        decoder_layers: int = 10,
        num_attention_heads: int = 8,
        dropout: float = 0.0,
        dim_feedforward: int = 2048,
        pre_norm: bool = False,
        enforce_input_projection: bool = False,
        common_stride: int = 4,
        ignore_value: int = 255,
        num_queries: int = 100,
        no_object_weight: float = 0.1,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        train_num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        init_std: float = 0.02,
        init_xavier_std: float = 1.0,
        use_auxiliary_loss: bool = True,
        feature_strides: list[int] | tuple[int, ...] = (4, 8, 16, 32),
        output_auxiliary_logits: bool | None = None,
        backbone: str | None = None,
        use_pretrained_backbone: bool = False,
        use_timm_backbone: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        hidden_dim = kwargs.pop("hidden_size", hidden_dim)
        decoder_layers = kwargs.pop("num_hidden_layers", decoder_layers)
        _check_types(locals(), kwargs)
        self.backbone = backbone
        self.use_pretrained_backbone = use_pretrained_backbone
        self.use_timm_backbone = use_timm_backbone
        self.backbone_kwargs = dict(backbone_kwargs) if backbone_kwargs else None
        self.backbone_config: BackboneConfig = _resolve_backbone_config(
            backbone_config, backbone, use_timm_backbone, self.backbone_kwargs, use_pretrained_backbone
        )

        self.feature_size = feature_size
        self.mask_feature_size = mask_feature_size
        self.hidden_dim = hidden_dim
        self.encoder_feedforward_dim = encoder_feedforward_dim
        self.activation_function = activation_function
        self.encoder_layers = encoder_layers
        self.decoder_layers = decoder_layers
        self.num_attention_heads = num_attention_heads
        self.dropout = dropout
        self.dim_feedforward = dim_feedforward
        self.pre_norm = pre_norm
        self.enforce_input_projection = enforce_input_projection
        self.common_stride = common_stride
        self.ignore_value = ignore_value
        self.num_queries = num_queries
        self.no_object_weight = no_object_weight
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.init_std = init_std
        self.init_xavier_std = init_xavier_std
        self.use_auxiliary_loss = use_auxiliary_loss
        self.feature_strides = list(feature_strides)
        self.output_auxiliary_logits = output_auxiliary_logits

        self.output_hidden_states: bool = bool(kwargs.pop("output_hidden_states", False))
        self.output_attentions: bool = bool(kwargs.pop("output_attentions", False))
        self.return_dict: bool = bool(kwargs.pop("return_dict", True))

        id2label = kwargs.pop("id2label", None)
        label2id = kwargs.pop("label2id", None)
        num_labels = kwargs.pop("num_labels", None)
        if id2label is not None:
            self.id2label = {int(k): str(v) for k, v in id2label.items()}
            if num_labels is not None and num_labels != len(self.id2label):
                raise ConfigError(f"num_labels={num_labels} but id2label has {len(self.id2label)} entries.")
        else:
            self.id2label = {i: f"LABEL_{i}" for i in range(2 if num_labels is None else num_labels)}
        if label2id is not None:
            self.label2id = {str(k): int(v) for k, v in label2id.items()}
        else:
            self.label2id = {name: i for i, name in self.id2label.items()}
        for derived in ("model_type", "transformers_version", VERSION_KEY):
            kwargs.pop(derived, None)
        self.extra: dict[str, Any] = kwargs

    # --- labels -------------------------------------------------------------------------------------------------

    @property
    def num_labels(self) -> int:
        """Number of real classes (the "no object" logit is extra)."""
        return len(self.id2label)

    @num_labels.setter
    def num_labels(self, value: int) -> None:
        if value != self.num_labels:
            self.id2label = {i: f"LABEL_{i}" for i in range(value)}
            self.label2id = {name: i for i, name in self.id2label.items()}

    hidden_size = _alias("hidden_dim")
    num_hidden_layers = _alias("decoder_layers")

    def __getattr__(self, name: str) -> Any:
        """Keys of ``extra`` (unknown config.json keys, unknown arguments) read as attributes, as in transformers."""
        extra = self.__dict__.get("extra")
        if extra is not None and name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__} has no attribute {name!r}")

    # --- construction helpers -----------------------------------------------------------------------------------

    @classmethod
    def from_backbone_config(cls, backbone_config: BackboneConfig | dict[str, Any], **kwargs: Any) -> Mask2FormerConfig:
        """A Mask2Former config around the given backbone config; other fields from ``kwargs`` or defaults."""
        return cls(backbone_config=backbone_config, **kwargs)

    def validate(self) -> None:
        """Raise ``ConfigError`` naming the first field whose value we cannot build a model from."""
        try:
            self.backbone_config.validate()
        except ValueError as err:
            raise ConfigError(f"Unsupported backbone_config: {err}") from err
        outputs = getattr(self.backbone_config, "out_features", None) or self.backbone_config.out_indices
        checks = [
            (self.hidden_dim % self.num_attention_heads == 0,
             f"hidden_dim={self.hidden_dim} must be divisible by num_attention_heads={self.num_attention_heads}"),
            (self.feature_size % self.num_attention_heads == 0,
             f"feature_size={self.feature_size} must be divisible by num_attention_heads={self.num_attention_heads}"),
            (self.feature_size % 32 == 0,
             f"feature_size={self.feature_size} must be a multiple of 32 (the pixel decoder uses GroupNorm(32))"),
            (self.decoder_layers >= 1, f"decoder_layers={self.decoder_layers} must be at least 1"),
            (self.encoder_layers >= 0, f"encoder_layers={self.encoder_layers} must be non-negative"),
            (self.num_queries >= 1, f"num_queries={self.num_queries} must be at least 1"),
            (self.activation_function in _DECODER_ACTIVATIONS,
             f"activation_function={self.activation_function!r} is not one of {', '.join(_DECODER_ACTIVATIONS)}"),
            (len(self.backbone_config.out_indices) == 4,
             f"the backbone must return 4 feature maps (strides 4..32); backbone_config asks for {outputs} (a "
             "backbone config alone returns only its last stage): pass out_features=['stage1', 'stage2', 'stage3', "
             f"'stage4'], e.g. {type(self.backbone_config).__name__}(out_features=['stage1', 'stage2', 'stage3', "
             "'stage4'])"),
            (self.common_stride in (1, 2, 4, 8) and self.common_stride <= min(self.feature_strides),
             f"common_stride={self.common_stride} must be a power of two no larger than the finest feature stride"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"Unsupported Mask2Former config: {message}.")

    # --- (de)serialisation --------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.extra)
        out.update(
            backbone_config=self.backbone_config.to_dict(),
            feature_size=self.feature_size,
            mask_feature_size=self.mask_feature_size,
            hidden_dim=self.hidden_dim,
            encoder_feedforward_dim=self.encoder_feedforward_dim,
            activation_function=self.activation_function,
            encoder_layers=self.encoder_layers,
            decoder_layers=self.decoder_layers,
            num_attention_heads=self.num_attention_heads,
            dropout=self.dropout,
            dim_feedforward=self.dim_feedforward,
            pre_norm=self.pre_norm,
            enforce_input_projection=self.enforce_input_projection,
            common_stride=self.common_stride,
            ignore_value=self.ignore_value,
            num_queries=self.num_queries,
            no_object_weight=self.no_object_weight,
            class_weight=self.class_weight,
            mask_weight=self.mask_weight,
            dice_weight=self.dice_weight,
            train_num_points=self.train_num_points,
            oversample_ratio=self.oversample_ratio,
            importance_sample_ratio=self.importance_sample_ratio,
            init_std=self.init_std,
            init_xavier_std=self.init_xavier_std,
            use_auxiliary_loss=self.use_auxiliary_loss,
            feature_strides=list(self.feature_strides),
            output_auxiliary_logits=self.output_auxiliary_logits,
            backbone=self.backbone,
            use_pretrained_backbone=self.use_pretrained_backbone,
            use_timm_backbone=self.use_timm_backbone,
            backbone_kwargs=self.backbone_kwargs,
            output_hidden_states=self.output_hidden_states,
            output_attentions=self.output_attentions,
            return_dict=self.return_dict,
            id2label={str(k): v for k, v in self.id2label.items()},
            label2id=dict(self.label2id),
            model_type=self.model_type,
        )
        out.setdefault("architectures", ["Mask2FormerForUniversalSegmentation"])
        out.update(version_record())  # the release that writes this file (read back as derived, like model_type)
        return out

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, path: str | os.PathLike[str]) -> None:
        Path(path).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> Mask2FormerConfig:
        model_type = data.get("model_type", cls.model_type)
        if model_type != cls.model_type:
            raise ConfigError(
                f"This config.json describes a {model_type!r} model, not 'mask2former'; point at a Mask2Former "
                "checkpoint."
            )
        merged = copy.deepcopy(data)
        merged.update(overrides)
        return cls(**merged)

    @classmethod
    def from_json_file(cls, path: str | os.PathLike[str]) -> Mask2FormerConfig:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path} is not valid JSON ({err}); it should be a Mask2Former config.json.") from err
        return cls.from_dict(data)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> Path:
        """Write ``config.json`` into ``save_directory`` (created if needed); returns the file's path."""
        directory = Path(save_directory)
        if directory.exists() and not directory.is_dir():
            raise NotADirectoryError(f"{directory} exists and is not a directory; choose a directory to save into.")
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / CONFIG_NAME
        self.to_json_file(path)
        return path

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike[str],
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        subfolder: str = "",
        return_unused_kwargs: bool = False,
        **overrides: Any,
    ) -> Mask2FormerConfig | tuple[Mask2FormerConfig, dict[str, Any]]:
        """Read ``config.json`` from a directory, a file path, or a hub repository id (``subfolder``: inside it).

        ``overrides`` set fields that the config has (also keys of the file that this library does not use, and
        the names of ``ATTRIBUTE_MAP``). Other keywords are not fields: as in transformers they change nothing and
        are returned with ``return_unused_kwargs=True`` as ``(config, unused)``; without it a warning names them.
        """
        from mask2former.hub import resolve_file

        source = Path(pretrained_model_name_or_path)
        if source.is_file():
            path = source
        else:
            path = resolve_file(
                pretrained_model_name_or_path,
                CONFIG_NAME,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                token=token,
                subfolder=subfolder,
            )
        config = cls.from_json_file(path)
        unused = config.update_fields(overrides)
        if return_unused_kwargs:
            return config, unused
        if unused:
            warnings.warn(f"Mask2FormerConfig.from_pretrained ignored keywords that are not config fields: "
                          f"{sorted(unused)}.", stacklevel=2)
        return config

    def update_fields(self, values: dict[str, Any]) -> dict[str, Any]:
        """Set the fields (attributes, ``extra`` keys, ``ATTRIBUTE_MAP`` names) named in ``values``; return the
        entries that name no field, unchanged."""
        unused = {}
        for key, value in values.items():
            if key == "num_labels":
                self.num_labels = value
            elif key in self.extra:
                self.extra[key] = value
            elif hasattr(self, key):
                setattr(self, key, value)
            else:
                unused[key] = value
        return unused

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mask2FormerConfig) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Mask2FormerConfig {self.to_json_string()}"


def _resolve_backbone_config(backbone_config: Any, backbone: str | None, use_timm_backbone: bool,
                             backbone_kwargs: dict[str, Any] | None, use_pretrained_backbone: bool) -> BackboneConfig:
    """The backbone config the seed's fields describe (``backbone_config``, ``backbone``, ``use_timm_backbone``,
    ``backbone_kwargs``); ``ConfigError`` for combinations that cannot be built here."""
    from mask2former.modeling.backbones.base import BackboneConfig

    if isinstance(backbone_config, dict):
        backbone_config = backbone_config_from_dict(backbone_config)
    elif backbone_config is not None and not isinstance(backbone_config, BackboneConfig):
        backbone_config = _convert_foreign_backbone_config(backbone_config)
    timm_type = _backbone_entry("timm_backbone").config_class
    if use_timm_backbone:
        if backbone_config is None:
            if not backbone:
                raise ConfigError("use_timm_backbone=True needs backbone=<a timm model name, e.g. 'resnet50'>.")
            kwargs = dict(backbone_kwargs or {})
            return timm_type(backbone=backbone, num_channels=kwargs.pop("in_chans", 3), **kwargs)
        if not isinstance(backbone_config, timm_type):
            raise ConfigError(f"use_timm_backbone=True but backbone_config is of type "
                              f"{backbone_config.model_type!r}; pass one or the other.")
        if backbone and backbone != backbone_config.backbone:
            raise ConfigError(f"backbone={backbone!r} and backbone_config.backbone={backbone_config.backbone!r} "
                              "disagree; pass one of them.")
        return backbone_config
    if backbone_config is None:
        if backbone is not None:
            raise ConfigError(
                f"backbone={backbone!r} names a backbone checkpoint, whose architecture this library does not fetch; "
                "pass its backbone_config (e.g. ResNetConfig(depths=[3, 4, 6, 3], out_features=['stage1', "
                "'stage2', 'stage3', 'stage4'])) together with backbone=..., and use_pretrained_backbone=True to "
                "start from that checkpoint's weights. For a timm model name, set use_timm_backbone=True."
            )
        if use_pretrained_backbone:
            raise ConfigError(_PRETRAINED_NEEDS_SOURCE)
        return _default_backbone_config()
    if backbone_kwargs:
        raise ConfigError("backbone_kwargs applies to a timm backbone built by name (use_timm_backbone=True); put "
                          "these settings in backbone_config instead.")
    if use_pretrained_backbone and not backbone:
        raise ConfigError(_PRETRAINED_NEEDS_SOURCE)
    return backbone_config


_PRETRAINED_NEEDS_SOURCE = (
    "use_pretrained_backbone=True needs backbone=<where the weights come from>: a hub id or local directory of a "
    "transformers backbone checkpoint matching backbone_config (e.g. 'microsoft/resnet-50'), or a timm model name "
    "with use_timm_backbone=True."
)


def _convert_foreign_backbone_config(config: Any) -> BackboneConfig:
    """Accept another library's backbone config object (e.g. transformers' SwinConfig) through its ``to_dict``."""
    to_dict = getattr(config, "to_dict", None)
    if to_dict is None:
        raise ConfigError(
            "backbone_config must be a backbone config of this library (SwinConfig, ResNetConfig, "
            f"TimmBackboneConfig), a dict, or an object with to_dict(); got {type(config).__name__}."
        )
    return backbone_config_from_dict(to_dict())
