"""AdamW with a backbone learning-rate multiplier, and warm-up followed by a poly or step schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from mask2former.train.config import TrainConfig


def parameter_groups(model: nn.Module, config: TrainConfig) -> list[dict]:
    """Four groups: backbone / rest × decayed / not decayed.

    The backbone gets ``lr × backbone_lr_multiplier``. As in the original recipe, normalisation weights, biases,
    embeddings (queries, level embeddings) and Swin's relative position tables get no weight decay.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        in_backbone = ".pixel_level_module.encoder." in f".{name}"
        no_decay = (param.dim() <= 1 or name.endswith(".bias") or "embed" in name
                    or "relative_position_bias_table" in name or "norm" in name.split(".")[-2])
        groups.setdefault((in_backbone, no_decay), []).append(param)
    out = []
    for (in_backbone, no_decay), params in sorted(groups.items()):
        out.append({
            "params": params,
            "lr": config.lr * (config.backbone_lr_multiplier if in_backbone else 1.0),
            "weight_decay": 0.0 if no_decay else config.weight_decay,
            "name": f"{'backbone' if in_backbone else 'heads'}{'_no_decay' if no_decay else ''}",
        })
    return out


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(parameter_groups(model, config), lr=config.lr, weight_decay=config.weight_decay)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Multiplier of each group's base learning rate at optimizer step ``step`` (0-based)."""
    if config.warmup_steps and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.schedule == "poly":
        return max(0.0, 1.0 - step / config.max_steps) ** config.poly_power
    if config.schedule == "step":
        passed = sum(step >= math.floor(m * config.max_steps) for m in config.step_milestones)
        return config.step_gamma**passed
    return 1.0


def build_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, config))
