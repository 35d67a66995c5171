"""``use_pretrained_backbone=True``: the backbone starts from ImageNet weights, fetched where ``backbone`` says.

- A transformers backbone checkpoint (``backbone="microsoft/resnet-50"``, a hub id, or a local directory holding
  ``config.json`` + ``model.safetensors``/``pytorch_model.bin``, e.g. one written by ``ResNetModel.save_pretrained``):
  its weights are read like any checkpoint (hub download needs ``mask2former[hub]`` and network once) and renamed by
  the backbone's key rules; its head (classifier, pooler, final norm) is ignored.
- A timm model (``use_timm_backbone=True``): timm downloads its own pretrained weights (from the Hugging Face hub).

Offline, a hub id that is not cached fails with a message saying where the weights would have come from.
``from_pretrained`` of a full Mask2Former checkpoint never fetches them: the checkpoint holds the backbone too.
"""

from __future__ import annotations

import warnings
from typing import Any

from torch import Tensor, nn

from mask2former.io.checkpoint import LoadReport, load_into_model, read_checkpoint_weights
from mask2former.hub import CheckpointNotFoundError, resolve_file
from mask2former.modeling.backbones.registry import backbone_entry


def load_pretrained_backbone(backbone: nn.Module, config: Any) -> LoadReport:
    """Copy pretrained weights into ``backbone`` (built from ``config.backbone_config``); returns what happened.

    Missing backbone keys (e.g. Swin's output norms, which classification checkpoints lack) keep their fresh
    initialisation and are named in a warning; wrongly shaped tensors raise ``CheckpointMismatchError``.
    """
    backbone_config = config.backbone_config
    if backbone_config.model_type == "timm_backbone":
        weights = _timm_weights(backbone_config)
    else:
        weights = _checkpoint_weights(str(config.backbone), backbone, backbone_config.model_type)
    own = backbone.state_dict()
    if not set(weights) & set(own):
        raise CheckpointNotFoundError(
            f"use_pretrained_backbone=True: {config.backbone!r} holds no weights of a {backbone_config.model_type} "
            "backbone with these names; point backbone at a checkpoint of that architecture (e.g. "
            "'microsoft/resnet-50' for ResNet-50)."
        )
    report = load_into_model(backbone, weights, strict=False)
    if report.missing:
        warnings.warn(
            f"use_pretrained_backbone=True: {len(report.missing)} backbone tensors are not in {config.backbone!r} and "
            f"keep their fresh initialisation: {', '.join(report.missing[:6])}"
            + (" ..." if len(report.missing) > 6 else ""),
            stacklevel=3,
        )
    return report


def _checkpoint_weights(source: str, backbone: nn.Module, model_type: str) -> dict[str, Tensor]:
    """The backbone tensors of a transformers checkpoint, under our names (a model prefix such as ``resnet.`` or
    ``swin.`` removed; heads and known extras left out)."""
    try:
        resolve_file(source, "config.json")  # every transformers checkpoint has one: says plainly when offline
        weights = read_checkpoint_weights(source)
    except CheckpointNotFoundError as err:
        raise CheckpointNotFoundError(
            f"use_pretrained_backbone=True takes the backbone weights from backbone={source!r}: a local directory, "
            f"or the hub repository https://huggingface.co/{source}. They could not be read: {err}"
        ) from err
    native_name = backbone_entry(model_type).rules.native_name
    own = set(backbone.state_dict())
    out: dict[str, Tensor] = {}
    for key, tensor in weights.items():
        for candidate in (key, key.split(".", 1)[-1]):
            name = native_name(candidate)
            if name in own:
                out[name] = tensor
                break
    return out


def _timm_weights(backbone_config: Any) -> dict[str, Tensor]:
    from mask2former.modeling.backbones.timm_backbone import build_timm, import_timm

    import_timm()  # a missing timm is reported as such, not as a download failure
    try:
        pretrained = build_timm(backbone_config, pretrained=True)
    except Exception as err:
        raise CheckpointNotFoundError(
            f"use_pretrained_backbone=True asks timm for the pretrained weights of {backbone_config.backbone!r}, which "
            f"timm downloads from the Hugging Face hub (https://huggingface.co/timm); that failed: {err}. Offline, "
            "set use_pretrained_backbone=False and load a full checkpoint instead."
        ) from err
    return pretrained.state_dict()
