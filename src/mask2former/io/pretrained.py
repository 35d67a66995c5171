"""``from_pretrained`` / ``save_pretrained`` for the model classes, in transformers' directory format.

A checkpoint directory holds ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``). Keys of a full
segmentation checkpoint start with ``model.``; a bare ``Mask2FormerModel`` checkpoint has no prefix. Either loads into
either class: the body takes what it needs, the head keys are reported as ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import torch
from torch import Tensor, nn

from mask2former.config import Mask2FormerConfig
from mask2former.io.checkpoint import (
    SAFE_WEIGHTS_NAME,
    TORCH_WEIGHTS_NAME,
    LoadReport,
    load_into_model,
    read_checkpoint_weights,
    to_file_layout,
    to_native_layout,
    write_safetensors_atomically,
)

ModelT = TypeVar("ModelT", bound="PretrainedMixin")

_HEAD_PREFIXES = ("class_predictor.", "criterion.")
_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
           "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def _to_full_keys(weights: dict[str, Tensor]) -> dict[str, Tensor]:
    """Give a bare-body checkpoint (keys ``pixel_level_module.…``) the ``model.`` prefix of a full one."""
    if any(key.startswith("model.") for key in weights):
        return weights
    return {(key if key.startswith(_HEAD_PREFIXES) else f"model.{key}"): value for key, value in weights.items()}


def resolve_dtype(dtype: torch.dtype | str | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return None
    if dtype not in _DTYPES:
        raise ValueError(f"dtype={dtype!r} is not one of {sorted(_DTYPES)} or a torch.dtype.")
    return _DTYPES[dtype]


def _transformers_placement(kwargs: dict[str, Any], dtype: Any, device: Any) -> tuple[Any, Any]:
    """transformers' other spellings: ``torch_dtype`` (older name of ``dtype``) and ``device_map`` naming one device
    (popped from ``kwargs``); a per-module ``device_map`` is refused."""
    if "torch_dtype" in kwargs:
        dtype = kwargs.pop("torch_dtype") if dtype is None else dtype
    if "device_map" in kwargs:
        device_map = kwargs.pop("device_map")
        if not isinstance(device_map, (str, torch.device, int)) or device_map == "auto":
            raise ValueError(f"device_map={device_map!r}: this library places the whole model on one device; pass "
                             "device='cpu', 'cuda', 'cuda:1', ... (or device_map naming one device).")
        device = device_map if device is None else device
    return dtype, device


class PretrainedMixin:
    """Adds ``from_pretrained``, ``save_pretrained`` and ``num_parameters`` to a Mask2Former ``nn.Module``."""

    config: Mask2FormerConfig
    load_report: LoadReport | None = None

    @classmethod
    def _is_body(cls) -> bool:
        return cls.__name__ == "Mask2FormerModel"

    @classmethod
    def from_pretrained(
        cls: type[ModelT],
        pretrained_model_name_or_path: str | os.PathLike[str] | None,
        *,
        config: Mask2FormerConfig | str | os.PathLike[str] | None = None,
        state_dict: dict[str, Tensor] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
        strict: bool = True,
        ignore_mismatched_sizes: bool = False,
        output_loading_info: bool = False,
        subfolder: str = "",
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **config_overrides: Any,
    ) -> ModelT | tuple[ModelT, dict[str, Any]]:
        """Load a checkpoint directory or hub id (e.g. ``facebook/mask2former-swin-tiny-coco-panoptic``), optionally
        in its ``subfolder``.

        ``config_overrides`` change config fields before the model is built (e.g. ``num_labels=3`` with
        ``ignore_mismatched_sizes=True`` to start fine-tuning with a new class head); a keyword that is neither an
        argument here nor a config field raises ``TypeError``. ``config`` replaces the checkpoint's config.json (a
        config or where to read one); ``state_dict`` replaces its weights (our names or transformers', in memory or
        in files), and with both the path may be ``None``. Returns the model in eval mode on ``device`` with ``dtype``;
        ``model.load_report`` says which checkpoint keys were ignored or missing, and ``output_loading_info=True``
        returns ``(model, {"missing_keys", "unexpected_keys", "mismatched_keys", "error_msgs"})`` as transformers does.
        """
        hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        dtype, device = _transformers_placement(config_overrides, dtype, device)
        if pretrained_model_name_or_path is None and (config is None or state_dict is None):
            raise ValueError("from_pretrained(None, ...) needs both config= and state_dict=; otherwise pass a "
                             "checkpoint directory or hub id.")
        if isinstance(config, (str, os.PathLike)):
            config = Mask2FormerConfig.from_pretrained(config, **hub)
        if config is None:
            config, unused = Mask2FormerConfig.from_pretrained(  # type: ignore[misc]
                pretrained_model_name_or_path, subfolder=subfolder, return_unused_kwargs=True, **hub,
                **config_overrides)
            if unused:
                raise TypeError(f"{cls.__name__}.from_pretrained got unexpected keyword arguments {sorted(unused)}: "
                                "they are neither loading options nor fields of Mask2FormerConfig.")
        elif config_overrides:
            raise ValueError("Pass config overrides either inside `config` or as keyword arguments, not both.")
        if state_dict is None:
            state_dict = read_checkpoint_weights(pretrained_model_name_or_path, subfolder=subfolder,  # type: ignore[arg-type]
                                                 **hub)
        weights = _to_full_keys(dict(state_dict))
        weights, ignored = to_native_layout(weights, config.backbone_config.model_type)
        head_keys = []
        if cls._is_body():
            head_keys = [key for key in weights if key.startswith(_HEAD_PREFIXES)]
            ignored += head_keys
            weights = {key[len("model."):]: value for key, value in weights.items() if key.startswith("model.")}
        model = cls._without_pretrained_backbone(config)
        if not cls._is_body():
            # derived from no_object_weight; older files may lack it
            weights.setdefault("criterion.empty_weight", model.criterion.empty_weight)  # type: ignore[attr-defined]
        model.load_report = load_into_model(
            model, weights, strict=strict, ignore_mismatched_sizes=ignore_mismatched_sizes, ignored=ignored  # type: ignore[arg-type]
        )
        model.eval()  # type: ignore[attr-defined]
        model.to(device=device, dtype=resolve_dtype(dtype))  # type: ignore[attr-defined]
        if not output_loading_info:
            return model
        report = model.load_report
        info = {"missing_keys": set(report.missing), "unexpected_keys": set(report.unexpected) | set(head_keys),
                "mismatched_keys": {key for key, _, _ in report.mismatched}, "error_msgs": []}
        return model, info

    @classmethod
    def from_original_checkpoint(
        cls: type[ModelT],
        path: str | os.PathLike[str],
        config: Mask2FormerConfig | str | os.PathLike[str] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | str | None = None,
    ) -> ModelT:
        """Load a checkpoint of the original Mask2Former model zoo (detectron2's ``model_final_*.pkl``, or a ``.pth``
        state dict), Swin or ResNet backbone, without detectron2 and without running code from the file.

        ``config``: a preset name (``"coco-panoptic-r50"``, see ``mask2former.io.zoo.ZOO``), a ``config.json`` path
        or a ``Mask2FormerConfig``. By default the preset whose released file has this name, else the architecture
        read off the tensor shapes. Returns the model in eval mode; ``model.load_report`` lists the stored tensors
        that were not loaded because they are derived (``criterion.empty_weight``, ``relative_position_index``).
        """
        from mask2former.io.convert import load_original

        model, _ = load_original(cls, path, config)
        model.to(device=device, dtype=resolve_dtype(dtype))  # type: ignore[attr-defined]
        return model  # type: ignore[return-value]

    @classmethod
    def _without_pretrained_backbone(cls: type[ModelT], config: Mask2FormerConfig) -> ModelT:
        """The model of ``config`` without fetching backbone weights: a full checkpoint is about to supply them.
        ``config.use_pretrained_backbone`` keeps its value (it is written back on saving)."""
        wanted = config.use_pretrained_backbone
        config.use_pretrained_backbone = False
        try:
            return cls(config)  # type: ignore[call-arg]
        finally:
            config.use_pretrained_backbone = wanted

    def save_pretrained(self, save_directory: str | os.PathLike[str], *, safe_serialization: bool = True) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (or ``pytorch_model.bin``) in transformers' layout.

        The directory is created if needed; existing files of those two names in it are replaced.
        """
        directory = Path(save_directory)
        config = self.config
        config.extra["architectures"] = [type(self).__name__]
        config.save_pretrained(directory)
        module: nn.Module = self  # type: ignore[assignment]
        tensors = to_file_layout(
            module.state_dict(),
            backbone_config=config.backbone_config,
            num_labels=None if self._is_body() else config.num_labels,
            no_object_weight=None if self._is_body() else config.no_object_weight,
            prefix="" if self._is_body() else "model.",
        )
        if safe_serialization:
            write_safetensors_atomically(tensors, directory / SAFE_WEIGHTS_NAME)
        else:
            torch.save(tensors, directory / TORCH_WEIGHTS_NAME)
        return directory

    def num_parameters(self, only_trainable: bool = False) -> int:
        module: nn.Module = self  # type: ignore[assignment]
        return sum(p.numel() for p in module.parameters() if p.requires_grad or not only_trainable)
