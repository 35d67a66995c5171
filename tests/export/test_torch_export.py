"""torch.export on the model as users call it: default (dataclass) outputs, dynamic batch, height and width."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_config_kwargs

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerForUniversalSegmentationOutput
from mask2former.export.onnx import example_size


def _model() -> Mask2FormerForUniversalSegmentation:
    torch.manual_seed(0)
    return Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs(
        backbone={"depths": [1, 1, 1, 1]}, encoder_layers=1, decoder_layers=3))).eval()


@pytest.mark.parametrize("strict", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_torch_export_with_default_outputs_equals_eager(strict):
    model = _model()
    dynamic = torch.export.Dim.DYNAMIC
    height, width = example_size(model)
    program = torch.export.export(model, (torch.randn(2, 3, height, width),),
                                  dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},), strict=strict)
    exported = program.module()
    # other batch sizes and image sizes (not multiples of 32) than the traced one; the traced graph's shape guards
    # hold for every stage with at least two windows a side
    for shape in [(1, 3, 483, 611), (3, 3, 500, 467)]:
        pixel_values = torch.randn(*shape, generator=torch.Generator().manual_seed(shape[0]))
        got = exported(pixel_values)
        with torch.inference_mode():
            expected = model(pixel_values)
        assert isinstance(got, Mask2FormerForUniversalSegmentationOutput)  # the dataclass, unflattened
        for key in ("class_queries_logits", "masks_queries_logits", "image_sizes"):
            torch.testing.assert_close(getattr(got, key), getattr(expected, key), rtol=0, atol=1e-5)
        assert got.padded_size == expected.padded_size == shape[2:]


def test_outputs_flatten_and_unflatten_as_pytrees():
    output = Mask2FormerForUniversalSegmentationOutput(class_queries_logits=torch.ones(1, 2, 3),
                                                       masks_queries_logits=torch.zeros(1, 2, 4, 4),
                                                       padded_size=(16, 16))
    leaves, spec = torch.utils._pytree.tree_flatten(output)
    assert any(leaf is output.class_queries_logits for leaf in leaves)
    rebuilt = torch.utils._pytree.tree_unflatten(leaves, spec)
    assert isinstance(rebuilt, Mask2FormerForUniversalSegmentationOutput)
    assert rebuilt.padded_size == (16, 16) and rebuilt.loss is None
