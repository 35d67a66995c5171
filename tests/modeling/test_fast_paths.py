"""Properties of the fast paths as a whole: no graph breaks under torch.compile, half precision stays correct.

The kernels themselves are compared with their references next to their modules' tests (deformable attention,
Swin window gathers); the full model is compared with transformers in tests/test_model_parity.py.
"""

from __future__ import annotations

from importlib import resources

import pytest
import torch

from helpers import tiny_config_kwargs

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation



def test_forward_traces_without_graph_breaks():
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs())).eval()
    explanation = torch._dynamo.explain(model)(torch.randn(1, 3, 64, 96))
    assert explanation.graph_break_count == 0, [reason.reason for reason in explanation.break_reasons]
    assert explanation.graph_count == 1


def _demo_model_directory():
    directory = resources.files("mask2former") / "assets" / "demo_model"
    if not (directory / "model.safetensors").is_file():
        pytest.skip("the trained demo model is not in this checkout")
    return str(directory)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_panoptic_maps_agree_with_float32(dtype):
    """Autocast on CPU, trained demo model, bundled example photos: >= 99% of pixels get the same segment."""
    from PIL import Image

    from mask2former.processing import Mask2FormerImageProcessor

    directory = _demo_model_directory()
    model = Mask2FormerForUniversalSegmentation.from_pretrained(directory).eval()
    processor = Mask2FormerImageProcessor.from_pretrained(directory)
    examples = resources.files("mask2former") / "assets" / "examples"
    names = sorted(p.name for p in examples.iterdir() if p.name.endswith(".jpg"))
    assert names
    for name in names:
        image = Image.open(examples / name).convert("RGB")
        pixel_values = processor(image, return_tensors="pt")["pixel_values"]
        maps = []
        for half in (False, True):
            with torch.inference_mode(), torch.autocast("cpu", dtype=dtype, enabled=half):
                outputs = model(pixel_values)
            if half:
                assert outputs.masks_queries_logits.dtype == dtype  # really ran in half precision
            panoptic = processor.post_process_panoptic_segmentation(outputs, target_sizes=[image.size[::-1]])[0]
            assert panoptic["segments_info"], "the demo model should find segments"
            maps.append(panoptic["segmentation"])
        agreement = (maps[0] == maps[1]).float().mean().item()
        assert agreement >= 0.99, (name, agreement)


def test_in_place_inference_equals_out_of_place_autograd_forward():
    """Without autograd the residual sums and activations are written in place (modeling/inplace.py); with autograd
    they are not. Same outputs (up to torch choosing other matmul kernels when it records a graph), and the recorded
    graph still backpropagates."""
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs())).eval()
    pixel_values = torch.randn(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        in_place = model(pixel_values, output_auxiliary_logits=True)
    recorded = model(pixel_values, output_auxiliary_logits=True)
    assert recorded.masks_queries_logits.requires_grad
    for key in ("masks_queries_logits", "class_queries_logits"):
        torch.testing.assert_close(getattr(in_place, key), getattr(recorded, key).detach(), rtol=0, atol=1e-5)
    recorded.masks_queries_logits.sum().backward()
    assert all(p.grad is not None for p in model.model.pixel_level_module.parameters() if p.requires_grad)
