"""Activation ("gradient") checkpointing of the repeated layers: recompute them in backward instead of storing them.

The modules that loop over identical layers (the Swin stages, the deformable encoder, the masked-attention decoder)
carry a ``gradient_checkpointing`` flag and call each layer through :func:`call_layer`. The model classes flip the flag
on all of them with ``gradient_checkpointing_enable()`` / ``gradient_checkpointing_disable()``, the method names that
transformers' ``Trainer`` calls.

Checkpointing is non-reentrant (``torch.utils.checkpoint.checkpoint(use_reentrant=False)``): it accepts keyword and
non-tensor arguments, gives gradients to a layer's parameters even when its inputs need none, and replays the random
state, so dropout and drop-path masks are the same in the recomputation. Results and gradients equal those without
checkpointing; only memory and time change.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint


def call_layer(layer: nn.Module, enabled: bool, *args: Any) -> Any:
    """``layer(*args)``, checkpointed when ``enabled`` and the call is recorded for a backward pass.

    Evaluation (``layer.training`` False) and ``torch.no_grad()`` always run the layer directly: there is nothing to
    save memory on, and recomputation would only cost time.
    """
    if enabled and layer.training and torch.is_grad_enabled():
        return checkpoint(layer, *args, use_reentrant=False)
    return layer(*args)


class GradientCheckpointingMixin:
    """Switches activation checkpointing on and off for every layer container of the model.

    ``gradient_checkpointing_*`` are the names in transformers' Mask2Former documentation; ``activation_checkpointing_*``
    are the names (and signature) that transformers' ``Trainer`` calls since transformers 5.
    """

    supports_gradient_checkpointing = True

    def _set_gradient_checkpointing(self: nn.Module, enabled: bool) -> None:
        found = False
        for module in self.modules():
            if hasattr(module, "gradient_checkpointing"):
                module.gradient_checkpointing = enabled
                found = True
        if not found:
            raise RuntimeError(f"{type(self).__name__} holds no module that supports gradient checkpointing")

    def gradient_checkpointing_enable(
        self,
        gradient_checkpointing_kwargs: dict[str, Any] | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Checkpoint every Swin block, deformable encoder layer and transformer decoder layer while training.

        The arguments exist for callers written for transformers (its ``Trainer`` passes them). Only what is
        implemented is accepted: non-reentrant checkpointing (``{"use_reentrant": False}`` or nothing), every layer
        (``every_n_layers=1``), activations kept on the model's device (``offload=False``).
        """
        kwargs = dict(gradient_checkpointing_kwargs or {})
        if kwargs.pop("use_reentrant", False):
            raise ValueError(
                "only non-reentrant gradient checkpointing is supported; pass gradient_checkpointing_kwargs="
                "{'use_reentrant': False} or nothing."
            )
        if kwargs:
            raise ValueError(f"unsupported gradient_checkpointing_kwargs: {sorted(kwargs)}")
        if every_n_layers != 1 or offload:
            raise ValueError("only every_n_layers=1 and offload=False are supported")
        self._set_gradient_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        """Store activations again (the default)."""
        self._set_gradient_checkpointing(False)

    @property
    def is_gradient_checkpointing(self: nn.Module) -> bool:
        return any(getattr(module, "gradient_checkpointing", False) for module in self.modules())

    def activation_checkpointing_enable(
        self,
        activation_checkpointing_kwargs: dict[str, Any] | None = None,
        every_n_layers: int = 1,
        offload: bool = False,
    ) -> None:
        """Same as ``gradient_checkpointing_enable``."""
        self.gradient_checkpointing_enable(activation_checkpointing_kwargs, every_n_layers, offload)

    def activation_checkpointing_disable(self) -> None:
        """Same as ``gradient_checkpointing_disable``."""
        self.gradient_checkpointing_disable()

    @property
    def is_activation_checkpointing(self) -> bool:
        return self.is_gradient_checkpointing
