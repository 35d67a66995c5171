"""Presets for the original Mask2Former model zoo: which architecture and labels each released file has.

A preset is named ``{dataset}-{task}-{backbone}`` (``coco-panoptic-r50``, ``ade20k-semantic-swin-l``, ...) and knows
its zoo file (``model_final_94dc52.pkl``: the md5 prefix in the name identifies it), so a released file is recognised
by its name alone. The facts come from the original repository's configs (``configs/**/*.yaml``) and ``MODEL_ZOO.md``:
ResNet stride in the 3x3 convolution (``STRIDE_IN_1X1: False``) and frozen BatchNorm, Swin with drop path 0.3,
``DEC_LAYERS: 10`` (``decoder_layers=10``: 9 masked-attention layers plus the prediction before the first), 100
queries (200 for the Swin-L panoptic and instance models), ImageNet mean and std in RGB, the test resolution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mask2former.io.zoo_labels import LABELS

_STAGES = ["stage1", "stage2", "stage3", "stage4"]
_RESNET = dict(model_type="resnet", embedding_size=64, hidden_sizes=[256, 512, 1024, 2048], layer_type="bottleneck",
               downsample_in_bottleneck=False, freeze_batch_norm=True, out_features=_STAGES)
_SWIN = dict(model_type="swin", patch_size=4, drop_path_rate=0.3, out_features=_STAGES)
BACKBONES: dict[str, dict[str, Any]] = {
    "r50": dict(_RESNET, depths=[3, 4, 6, 3]),
    "r101": dict(_RESNET, depths=[3, 4, 23, 3]),
    "swin-t": dict(_SWIN, embed_dim=96, depths=[2, 2, 6, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "swin-s": dict(_SWIN, embed_dim=96, depths=[2, 2, 18, 2], num_heads=[3, 6, 12, 24], window_size=7),
    "swin-b": dict(_SWIN, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
    "swin-b-in21k": dict(_SWIN, embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12),
    "swin-l": dict(_SWIN, embed_dim=192, depths=[2, 2, 18, 2], num_heads=[6, 12, 24, 48], window_size=12),
}
# dataset-task: (labels, test shortest edge, test longest edge)
DATASETS: dict[str, tuple[str, int, int]] = {
    "coco-panoptic": ("coco_panoptic", 800, 1333),
    "coco-instance": ("coco_instance", 800, 1333),
    "ade20k-semantic": ("ade20k", 512, 2048),
    "ade20k-panoptic": ("ade20k", 640, 2560),
    "ade20k-instance": ("ade20k_instance", 640, 2560),
    "cityscapes-semantic": ("cityscapes", 1024, 2048),
    "cityscapes-panoptic": ("cityscapes", 1024, 2048),
    "cityscapes-instance": ("cityscapes_instance", 1024, 2048),
    "mapillary-semantic": ("mapillary_vistas", 2048, 2048),
    "mapillary-panoptic": ("mapillary_vistas", 2048, 2048),
}
IMAGENET_MEAN = [0.485, 0.456, 0.406]  # the configs' PIXEL_MEAN [123.675, 116.28, 103.53] / 255, RGB
IMAGENET_STD = [0.229, 0.224, 0.225]  # PIXEL_STD [58.395, 57.12, 57.375] / 255


@dataclass(frozen=True)
class ZooEntry:
    dataset: str  # a key of DATASETS
    backbone: str  # a key of BACKBONES
    num_queries: int
    file: str  # the released file's name, model_final_<md5 prefix>.pkl
    test_size: tuple[int, int] | None = None  # (shortest, longest) edge when not the dataset's

    @property
    def name(self) -> str:
        return f"{self.dataset}-{self.backbone}"

    @property
    def labels(self) -> str:
        return DATASETS[self.dataset][0]

    @property
    def image_size(self) -> tuple[int, int]:
        return self.test_size or DATASETS[self.dataset][1:]


_ZOO_ROWS = [  # (dataset, [(backbone, queries, md5 prefix, test size or None), ...])
    ("coco-panoptic", [("r50", 100, "94dc52"), ("r101", 100, "b807bd"), ("swin-t", 100, "9fd0ae"),
                       ("swin-s", 100, "a407fd"), ("swin-b", 100, "9d7f02"), ("swin-b-in21k", 100, "54b88a"),
                       ("swin-l", 200, "f07440")]),
    ("coco-instance", [("r50", 100, "3c8ec9"), ("r101", 100, "eba159"), ("swin-t", 100, "86143f"),
                       ("swin-s", 100, "1e7f22"), ("swin-b", 100, "f6e0f6"), ("swin-b-in21k", 100, "83d103"),
                       ("swin-l", 200, "e5f453")]),
    ("ade20k-semantic", [("r50", 100, "500878"), ("r101", 100, "0d68be"), ("swin-t", 100, "5274a6"),
                         ("swin-s", 100, "011c6d"), ("swin-b", 100, "503e96", (640, 2560)),
                         ("swin-b-in21k", 100, "7e47bf", (640, 2560)), ("swin-l", 100, "6b4a3a", (640, 2560))]),
    ("ade20k-panoptic", [("r50", 100, "5c90d4"), ("swin-l", 200, "e0c58e")]),
    ("ade20k-instance", [("r50", 100, "67e945"), ("swin-l", 200, "92dae9")]),
    ("cityscapes-semantic", [("r50", 100, "cc1b1f"), ("r101", 100, "257ce8"), ("swin-t", 100, "2d58d4"),
                             ("swin-s", 100, "fa26ae"), ("swin-b-in21k", 100, "1c6b65"), ("swin-l", 100, "17c1ee")]),
    ("cityscapes-panoptic", [("r50", 100, "4ab90c"), ("r101", 100, "04d286"), ("swin-t", 100, "ceba0f"),
                             ("swin-s", 100, "23efb7"), ("swin-b-in21k", 100, "fa840f"), ("swin-l", 200, "064788")]),
    ("cityscapes-instance", [("r50", 100, "01a8ed"), ("r101", 100, "c2b8c8"), ("swin-t", 100, "6a63f8"),
                             ("swin-s", 100, "974824"), ("swin-b-in21k", 100, "7a3b6d"), ("swin-l", 200, "dfa862")]),
    ("mapillary-semantic", [("r50", 100, "6c66d0"), ("swin-l", 100, "90ee2d")]),
    ("mapillary-panoptic", [("r50", 100, "4e9874"), ("swin-l", 200, "132c71")]),
]
ZOO: dict[str, ZooEntry] = {
    entry.name: entry
    for dataset, rows in _ZOO_ROWS
    for entry in (ZooEntry(dataset, row[0], row[1], f"model_final_{row[2]}.pkl", *row[3:]) for row in rows)
}
_BY_FILE = {entry.file: entry for entry in ZOO.values()}
# The zoo's YouTubeVIS 2019/2021 models: a video architecture, not loadable as image models.
VIDEO_FILES = frozenset(f"model_final_{md5}.pkl" for md5 in (
    "34112b", "a34dca", "26fffe", "4a5174", "221a8a", "c5c739", "b8aae2", "6efd7a", "965185", "0dec91", "a9b925",
    "4da256"))
_ZOO_FILE = re.compile(r"model_final_[0-9a-f]{6}\.pkl")


def preset(name: str) -> ZooEntry:
    """The zoo entry called ``name`` (e.g. ``coco-panoptic-r50``); a ``KeyError`` listing the names otherwise."""
    if name not in ZOO:
        raise KeyError(f"{name!r} is not a preset; presets: {', '.join(ZOO)}.")
    return ZOO[name]


def preset_for_file(path: str | Path) -> ZooEntry | None:
    """The zoo entry whose released file has this name (also as ``<name> (1).pkl``-style copies), or ``None``;
    ``ValueError`` for the zoo's video models."""
    match = _ZOO_FILE.search(Path(path).name)
    if match and match.group(0) in VIDEO_FILES:
        raise ValueError(f"{Path(path).name} is a YouTubeVIS video model of the original zoo; only the image models "
                         "(panoptic, instance, semantic) are supported.")
    return _BY_FILE.get(match.group(0)) if match else None


def id2label_for(num_labels: int, labels: str | None = None) -> dict[int, str] | None:
    """Class names for a zoo dataset (``labels``, a key of ``LABELS``), or the only zoo dataset with that many
    classes; ``None`` when the count matches none (or, without ``labels``, several)."""
    if labels is not None:
        names = LABELS[labels]
        return dict(enumerate(names)) if len(names) == num_labels else None
    matching = {names for names in LABELS.values() if len(names) == num_labels}
    return dict(enumerate(matching.pop())) if len(matching) == 1 else None


def config_kwargs(entry: ZooEntry) -> dict[str, Any]:
    """``Mask2FormerConfig`` keyword arguments of a zoo entry (every other field has the original's value, which is
    also transformers' default)."""
    names = LABELS[entry.labels]
    return dict(backbone_config=dict(BACKBONES[entry.backbone]), num_queries=entry.num_queries, decoder_layers=10,
                id2label=dict(enumerate(names)))


def processor_kwargs(entry: ZooEntry | None) -> dict[str, Any]:
    """``Mask2FormerImageProcessor`` keyword arguments for the entry's test resolution and normalisation."""
    shortest, longest = entry.image_size if entry is not None else (800, 1333)
    return dict(size={"shortest_edge": shortest, "longest_edge": longest}, image_mean=IMAGENET_MEAN,
                image_std=IMAGENET_STD, ignore_index=255)
