"""Mask2FormerModel (backbone -> pixel decoder -> transformer decoder) and the segmentation model with its heads.

The module names (``pixel_level_module.encoder``/``decoder``, ``transformer_module``, ``class_predictor``,
``criterion``) are those of the checkpoint files, so weights load without renaming.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from mask2former.config import Mask2FormerConfig
from mask2former.io.pretrained import PretrainedMixin
from mask2former.modeling.backbones import Backbone
from mask2former.modeling.builder import (
    build_backbone,
    build_class_predictor,
    build_criterion,
    build_pixel_decoder,
    build_transformer_decoder,
)
from mask2former.modeling.recompute import GradientCheckpointingMixin
from mask2former.modeling.outputs import (
    Mask2FormerForUniversalSegmentationOutput,
    Mask2FormerModelOutput,
    image_sizes_from_pixel_mask,
)
from mask2former.modeling.pixel_decoder import PixelDecoder, PixelDecoderOutput
from mask2former.modeling.transformer_decoder import MaskedAttentionTransformer, TransformerDecoderOutput


class PixelLevelModule(nn.Module):
    """Backbone (``encoder``, any module honouring ``backbones.Backbone``) followed by the pixel decoder."""

    def __init__(self, encoder: Backbone, decoder: PixelDecoder) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def forward(self, pixel_values: Tensor) -> tuple[list[Tensor], PixelDecoderOutput]:
        features = self.encoder(pixel_values)  # 4 maps (B, C_i, H_i, W_i), strides 4..32
        return features, self.decoder(features)


@dataclass
class _Features:
    """Everything one forward pass computes, before it is arranged into a public output."""

    backbone_features: list[Tensor]
    pixel_decoder: PixelDecoderOutput
    transformer: TransformerDecoderOutput
    image_sizes: Tensor
    padded_size: tuple[int, int]


def check_pixel_values(pixel_values: Tensor, num_channels: int, pixel_mask: Tensor | None) -> None:
    """Raise a ValueError that names the problem when the inputs cannot be a batch of images for this model."""
    if not isinstance(pixel_values, Tensor):
        raise ValueError(
            f"pixel_values must be a torch.Tensor of shape (B, {num_channels}, H, W), got {type(pixel_values).__name__};"
            " prepare images with Mask2FormerImageProcessor(images, return_tensors='pt')."
        )
    if pixel_values.dim() != 4 or pixel_values.shape[1] != num_channels:
        raise ValueError(
            f"pixel_values must have shape (B, {num_channels}, H, W), got {tuple(pixel_values.shape)}; "
            "a single image needs a batch dimension (pixel_values[None]) and channels first."
        )
    if not pixel_values.is_floating_point():
        raise ValueError(
            f"pixel_values must be floating point (normalised images), got {pixel_values.dtype}; "
            "use Mask2FormerImageProcessor to rescale and normalise."
        )
    if min(pixel_values.shape[2:]) < 1 or pixel_values.shape[0] < 1:
        raise ValueError(f"pixel_values {tuple(pixel_values.shape)} holds no image.")
    if pixel_mask is not None and tuple(pixel_mask.shape) != (pixel_values.shape[0], *pixel_values.shape[2:]):
        raise ValueError(
            f"pixel_mask must have shape (B, H, W) = {(pixel_values.shape[0], *pixel_values.shape[2:])}, "
            f"got {tuple(pixel_mask.shape)}."
        )


class Mask2FormerModel(PretrainedMixin, GradientCheckpointingMixin, nn.Module):
    """The Mask2Former body: returns the hidden states needed to compute class and mask logits."""

    main_input_name = "pixel_values"

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        backbone = build_backbone(config)
        self.pixel_level_module = PixelLevelModule(backbone, build_pixel_decoder(config, backbone.feature_info))
        if config.use_pretrained_backbone:
            from mask2former.io.pretrained_backbone import load_pretrained_backbone

            load_pretrained_backbone(backbone, config)
        self.transformer_module: MaskedAttentionTransformer = build_transformer_decoder(config)

    def compute_features(self, pixel_values: Tensor, pixel_mask: Tensor | None = None,
                         output_attentions: bool = False, intermediate_masks: bool = True) -> _Features:
        check_pixel_values(pixel_values, self.config.backbone_config.num_channels, pixel_mask)
        batch, _, height, width = pixel_values.shape
        backbone_features, pixel_decoder = self.pixel_level_module(pixel_values)
        transformer = self.transformer_module(
            pixel_decoder.multi_scale_features, pixel_decoder.mask_features, output_attentions=output_attentions,
            intermediate_masks=intermediate_masks,
        )
        image_sizes = image_sizes_from_pixel_mask(pixel_mask, batch, height, width, pixel_values.device)
        return _Features(backbone_features, pixel_decoder, transformer, image_sizes, (height, width))

    def forward(
        self,
        pixel_values: Tensor,
        pixel_mask: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> Mask2FormerModelOutput | tuple[Tensor, ...]:
        """pixel_values (B, 3, H, W), any H and W; pixel_mask (B, H, W) with 1 on real pixels, 0 on padding.

        The pixel mask does not change the network's computation (as in the reference implementations); it gives
        each image's valid size to the post-processors.
        """
        hidden = self.config.output_hidden_states if output_hidden_states is None else output_hidden_states
        attentions = self.config.output_attentions if output_attentions is None else output_attentions
        as_dict = self.config.return_dict if return_dict is None else return_dict
        f = self.compute_features(pixel_values, pixel_mask, output_attentions=attentions)
        output = Mask2FormerModelOutput(
            encoder_last_hidden_state=f.backbone_features[-1],
            pixel_decoder_last_hidden_state=f.pixel_decoder.mask_features,
            transformer_decoder_last_hidden_state=f.transformer.last_hidden_state,
            encoder_hidden_states=tuple(f.backbone_features) if hidden else None,
            pixel_decoder_hidden_states=tuple(f.pixel_decoder.multi_scale_features) if hidden else None,
            transformer_decoder_hidden_states=f.transformer.hidden_states if hidden else None,
            transformer_decoder_intermediate_states=f.transformer.intermediate_states if hidden else None,
            masks_queries_logits=f.transformer.masks_queries_logits,
            attentions=f.transformer.attentions,
            image_sizes=f.image_sizes,
            padded_size=f.padded_size,
        )
        return output if as_dict else output.to_tuple()


class Mask2FormerForUniversalSegmentation(PretrainedMixin, GradientCheckpointingMixin, nn.Module):
    """Mask2Former with its class head: one model for panoptic, instance and semantic segmentation."""

    main_input_name = "pixel_values"
    _checkpoint_prefix = ""

    def __init__(self, config: Mask2FormerConfig) -> None:
        super().__init__()
        config.validate()
        self.config = config
        self.model = Mask2FormerModel(config)
        self.class_predictor = build_class_predictor(config)
        self.criterion = build_criterion(config)
        nn.init.normal_(self.class_predictor.weight, std=config.init_std)
        nn.init.zeros_(self.class_predictor.bias)

    def forward(
        self,
        pixel_values: Tensor,
        mask_labels: list[Tensor] | None = None,
        class_labels: list[Tensor] | None = None,
        pixel_mask: Tensor | None = None,
        output_hidden_states: bool | None = None,
        output_auxiliary_logits: bool | None = None,
        output_attentions: bool | None = None,
        return_dict: bool | None = None,
    ) -> Mask2FormerForUniversalSegmentationOutput | tuple:
        """Class logits (B, Q, K+1) and mask logits (B, Q, H/4, W/4); the loss when both kinds of labels are given
        (as in transformers, one kind alone computes no loss).

        mask_labels: one (N_i, H, W) binary tensor per image (any resolution, e.g. the processor's padded size).
        class_labels: one (N_i,) int64 tensor per image, values in [0, num_labels). N_i may be 0.
        """
        config = self.config
        hidden = config.output_hidden_states if output_hidden_states is None else output_hidden_states
        attentions = config.output_attentions if output_attentions is None else output_attentions
        as_dict = config.return_dict if return_dict is None else return_dict
        aux = config.output_auxiliary_logits if output_auxiliary_logits is None else output_auxiliary_logits

        training = mask_labels is not None and class_labels is not None
        if (mask_labels is None) != (class_labels is None):
            given = "mask_labels" if class_labels is None else "class_labels"
            warnings.warn(f"{given} given alone: no loss is computed (that needs mask_labels and class_labels).",
                          stacklevel=2)
        # Without a loss or auxiliary outputs, the intermediate masks are only computed at the size they are used at.
        f = self.model.compute_features(pixel_values, pixel_mask, output_attentions=attentions,
                                        intermediate_masks=bool(aux) or training)
        # one (B, Q, K+1) class prediction per decoder-LayerNorm-ed query state (Q, B, D)
        class_logits = [self.class_predictor(state.transpose(0, 1)) for state in f.transformer.intermediate_states]
        mask_logits = list(f.transformer.masks_queries_logits)  # each (B, Q, H/4, W/4)

        loss, loss_dict = None, None
        if training:
            loss_dict, loss = self._loss(class_logits, mask_logits, mask_labels, class_labels, len(pixel_values))

        auxiliary_logits = [
            {"masks_queries_logits": masks, "class_queries_logits": classes}
            for masks, classes in zip(mask_logits[:-1], class_logits[:-1])
        ]
        output = Mask2FormerForUniversalSegmentationOutput(
            loss=loss,
            class_queries_logits=class_logits[-1],
            masks_queries_logits=mask_logits[-1],
            auxiliary_logits=auxiliary_logits if aux else None,
            encoder_last_hidden_state=f.backbone_features[-1],
            pixel_decoder_last_hidden_state=f.pixel_decoder.mask_features,
            transformer_decoder_last_hidden_state=f.transformer.last_hidden_state,
            encoder_hidden_states=tuple(f.backbone_features) if hidden else None,
            pixel_decoder_hidden_states=tuple(f.pixel_decoder.multi_scale_features) if hidden else None,
            transformer_decoder_hidden_states=f.transformer.hidden_states if hidden else None,
            attentions=f.transformer.attentions,
            loss_dict=loss_dict,
            image_sizes=f.image_sizes,
            padded_size=f.padded_size,
        )
        return output if as_dict else output.to_tuple()

    def _loss(self, class_logits: list[Tensor], mask_logits: list[Tensor], mask_labels: list[Tensor],
              class_labels: list[Tensor], batch_size: int) -> tuple[dict[str, Tensor], Tensor]:
        """Weighted loss terms by name and their sum; auxiliary layers only when ``use_auxiliary_loss``."""
        if len(mask_labels) != batch_size or len(class_labels) != batch_size:
            raise ValueError(
                f"mask_labels and class_labels need one entry per image: batch of {batch_size}, got "
                f"{len(mask_labels)} mask_labels and {len(class_labels)} class_labels."
            )
        for i, (masks, classes) in enumerate(zip(mask_labels, class_labels)):
            if masks.dim() != 3 or classes.dim() != 1 or masks.shape[0] != classes.shape[0]:
                raise ValueError(
                    f"image {i}: mask_labels must be (N, H, W) and class_labels (N,) with the same N; got "
                    f"{tuple(masks.shape)} and {tuple(classes.shape)}."
                )
            if classes.numel() and (int(classes.min()) < 0 or int(classes.max()) >= self.config.num_labels):
                raise ValueError(
                    f"image {i}: class_labels hold ids outside [0, {self.config.num_labels}) "
                    f"(min {int(classes.min())}, max {int(classes.max())}); the model has {self.config.num_labels} "
                    "labels. Map your label ids to the model's id2label, or build the model with more labels."
                )
        if not self.config.use_auxiliary_loss:
            class_logits, mask_logits = class_logits[-1:], mask_logits[-1:]
        raw = self.criterion(class_logits, mask_logits, list(mask_labels), list(class_labels))
        weighted = self.criterion.weighted_losses(raw)
        return weighted, torch.stack(list(weighted.values())).sum()
