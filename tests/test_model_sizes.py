"""The official Swin and ResNet sizes build with the published parameter counts (on the meta device: no memory, no
time), equal to transformers' counts for the same configs."""

from __future__ import annotations

import pytest
import torch

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

# name: (embed_dim, depths, heads, window, queries, published size in millions for COCO panoptic)
SIZES = {
    "swin-tiny": (96, [2, 2, 6, 2], [3, 6, 12, 24], 7, 100, 47),
    "swin-small": (96, [2, 2, 18, 2], [3, 6, 12, 24], 7, 100, 69),
    "swin-base": (128, [2, 2, 18, 2], [4, 8, 16, 32], 12, 100, 107),
    "swin-large": (192, [2, 2, 18, 2], [6, 12, 24, 48], 12, 200, 216),
}


def _config(embed_dim, depths, heads, window, queries):
    backbone = dict(embed_dim=embed_dim, depths=depths, num_heads=heads, window_size=window,
                    out_features=["stage1", "stage2", "stage3", "stage4"])
    return dict(backbone_config=backbone, num_labels=133, num_queries=queries)


@pytest.mark.parametrize("name", list(SIZES))
def test_parameter_count_matches_published_and_transformers(name):
    *arch, published = SIZES[name]
    with torch.device("meta"):
        ours = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**_config(*arch)))
    count = ours.num_parameters()
    assert round(count / 1e6) == published, count
    transformers = pytest.importorskip("transformers")
    kwargs = _config(*arch)
    kwargs["backbone_config"] = transformers.SwinConfig(**kwargs["backbone_config"])
    with torch.device("meta"):
        ref = transformers.Mask2FormerForUniversalSegmentation(transformers.Mask2FormerConfig(**kwargs))
    # transformers 5 carries an unused LayerNorm on the last Swin stage; everything else is the same
    ref_count = sum(p.numel() for n, p in ref.named_parameters() if ".swin.layernorm." not in n)
    assert count == ref_count


# name: (ResNet depths, published size in millions for COCO panoptic, from the original model zoo)
RESNETS = {"R50": ([3, 4, 6, 3], 44), "R101": ([3, 4, 23, 3], 63)}


@pytest.mark.parametrize("name", list(RESNETS))
def test_resnet_parameter_count_matches_published_and_transformers(name):
    depths, published = RESNETS[name]
    kwargs = dict(backbone_config=dict(model_type="resnet", depths=depths,
                                       out_features=["stage1", "stage2", "stage3", "stage4"]), num_labels=133)
    with torch.device("meta"):
        ours = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs))
    count = ours.num_parameters()
    print(f"{name}: {count:,} parameters (zoo: {published}M)")
    assert round(count / 1e6) == published, count
    transformers = pytest.importorskip("transformers")
    backbone = dict(kwargs["backbone_config"])
    backbone.pop("model_type")
    kwargs["backbone_config"] = transformers.ResNetConfig(**backbone)
    with torch.device("meta"):
        ref = transformers.Mask2FormerForUniversalSegmentation(transformers.Mask2FormerConfig(**kwargs))
    assert count == sum(p.numel() for p in ref.parameters())
