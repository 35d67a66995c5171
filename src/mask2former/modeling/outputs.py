"""Output containers of the models, with the field names and the tuple behaviour of transformers' outputs."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterator

import torch
from torch import Tensor


class ModelOutput:
    """Base for output dataclasses: attribute access, ``out["name"]``, ``out[i]`` and ``to_tuple()``.

    Like transformers' outputs, integer indexing and ``to_tuple()`` see only the fields that are not ``None``, in
    declaration order. Fields listed in ``_not_in_tuple`` (our additions, e.g. ``image_sizes``) are attributes only,
    so that tuple positions stay those of transformers.
    """

    _not_in_tuple: tuple[str, ...] = ()

    def keys(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in self._not_in_tuple and getattr(self, f.name) is not None]

    def values(self) -> list[Any]:
        return [getattr(self, name) for name in self.keys()]

    def items(self) -> list[tuple[str, Any]]:
        return [(name, getattr(self, name)) for name in self.keys()]

    def to_tuple(self) -> tuple[Any, ...]:
        return tuple(self.values())

    def __getitem__(self, key: str | int) -> Any:
        if isinstance(key, str):
            if key not in self.keys():
                raise KeyError(key)
            return getattr(self, key)
        return self.to_tuple()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self.keys())


@dataclass
class Mask2FormerModelOutput(ModelOutput):
    """What ``Mask2FormerModel`` returns.

    encoder_last_hidden_state: (B, 8C, H/32, W/32) last backbone map.
    pixel_decoder_last_hidden_state: (B, mask_dim, H/4, W/4) mask features.
    transformer_decoder_last_hidden_state: (B, Q, D) final query states (before the decoder LayerNorm).
    encoder_hidden_states: the 4 backbone maps, finest first (with ``output_hidden_states``).
    pixel_decoder_hidden_states: the 3 multi-scale maps, coarsest first (with ``output_hidden_states``).
    transformer_decoder_hidden_states: query states before the first layer and after each layer.
    transformer_decoder_intermediate_states: decoder_layers LayerNorm-ed query states, (Q, B, D) each.
    masks_queries_logits: decoder_layers mask predictions (B, Q, H/4, W/4), last one final.
    attentions: attention weights of the transformer decoder layers (with ``output_attentions``).
    image_sizes: (B, 2) valid (height, width) of each image inside the padded batch, from ``pixel_mask``.
    padded_size: (H, W) of ``pixel_values``.
    """

    encoder_last_hidden_state: Tensor | None = None
    pixel_decoder_last_hidden_state: Tensor | None = None
    transformer_decoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None
    pixel_decoder_hidden_states: tuple[Tensor, ...] | None = None
    transformer_decoder_hidden_states: tuple[Tensor, ...] | None = None
    transformer_decoder_intermediate_states: tuple[Tensor, ...] | None = None
    masks_queries_logits: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    image_sizes: Tensor | None = None
    padded_size: tuple[int, int] | None = None

    _not_in_tuple = ("image_sizes", "padded_size")


@dataclass
class Mask2FormerForUniversalSegmentationOutput(ModelOutput):
    """What ``Mask2FormerForUniversalSegmentation`` returns; pass it straight to the image processor's post-processors.

    loss: total weighted loss, when labels were given. loss_dict: each weighted term by name (attribute only).
    class_queries_logits: (B, Q, K+1), the last logit is "no object".
    masks_queries_logits: (B, Q, H/4, W/4) mask logits at stride 4 of the padded input.
    auxiliary_logits: one dict per earlier decoder layer with the same two keys (with ``output_auxiliary_logits``).
    Other fields as in ``Mask2FormerModelOutput``.
    """

    loss: Tensor | None = None
    class_queries_logits: Tensor | None = None
    masks_queries_logits: Tensor | None = None
    auxiliary_logits: list[dict[str, Tensor]] | None = None
    encoder_last_hidden_state: Tensor | None = None
    pixel_decoder_last_hidden_state: Tensor | None = None
    transformer_decoder_last_hidden_state: Tensor | None = None
    encoder_hidden_states: tuple[Tensor, ...] | None = None
    pixel_decoder_hidden_states: tuple[Tensor, ...] | None = None
    transformer_decoder_hidden_states: tuple[Tensor, ...] | None = None
    attentions: tuple[Tensor, ...] | None = None
    loss_dict: dict[str, Tensor] | None = None
    image_sizes: Tensor | None = None
    padded_size: tuple[int, int] | None = None

    _not_in_tuple = ("loss_dict", "image_sizes", "padded_size")


# Registered with torch's pytree (by their type, no other torch state), so that ``torch.export`` and ``torch.compile``
# can return them: an exported program's outputs are a flattened pytree of these, unflattened back into the dataclass.
for _output in (Mask2FormerModelOutput, Mask2FormerForUniversalSegmentationOutput):
    torch.export.register_dataclass(_output, serialized_type_name=f"mask2former.{_output.__name__}")


def image_sizes_from_pixel_mask(pixel_mask: Tensor | None, batch_size: int, height: int, width: int,
                                device: torch.device) -> Tensor:
    """Valid (height, width) per image: the extent of the 1-region of ``pixel_mask`` (B, H, W), or the full size.

    Padding is at the bottom and right, so the extent is the number of rows/columns that hold any valid pixel.
    """
    if pixel_mask is None:
        full = torch.full((batch_size,), height, device=device, dtype=torch.long)  # no host copy (CUDA graphs)
        return torch.stack([full, full.new_full((batch_size,), width)], dim=1)  # (B, 2)
    valid = pixel_mask.to(torch.bool)  # (B, H, W)
    rows = valid.any(dim=2).sum(dim=1)  # (B,)
    cols = valid.any(dim=1).sum(dim=1)  # (B,)
    return torch.stack([rows, cols], dim=1).to(torch.long)  # (B, 2)
