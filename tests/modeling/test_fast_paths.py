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

    from mask2former.preprocess import Mask2FormerImageProcessor

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


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run benchmarks/gpu_check.sh)")


def test_small_constant_matches_torch_tensor():
    from mask2former.modeling.deformable_attention import small_constant

    for values, dtype in (([[3, 5], [7, 11]], torch.float32), ([0, 1, 97, 98], torch.int32), ([-1.0, 2.5], torch.float64)):
        expected = torch.tensor(values, dtype=dtype)
        torch.testing.assert_close(small_constant(values, device="cpu", dtype=dtype), expected, rtol=0, atol=0)
        on_meta = small_constant(values, device="meta", dtype=dtype)  # the fill path, shapes and dtypes only
        assert on_meta.shape == expected.shape and on_meta.dtype == dtype
    if torch.cuda.is_available():
        got = small_constant([[3, 5], [7, 2**24 + 1]], device="cuda", dtype=torch.int64).cpu()
        assert got.tolist() == [[3, 5], [7, 2**24 + 1]]


@needs_cuda
def test_cuda_graph_replay_equals_eager_forward():
    """The inference forward makes no host-to-device copies, so it can be captured in a CUDA graph and replayed."""
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs())).cuda().eval()
    pixel_values = torch.randn(2, 3, 64, 96, device="cuda")
    with torch.inference_mode():
        eager = model(pixel_values)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(2):
                model(pixel_values)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = model(pixel_values)
        pixel_values.copy_(pixel_values)  # same input; replay must reproduce the eager result
        graph.replay()
        torch.cuda.synchronize()
    for key in ("class_queries_logits", "masks_queries_logits"):
        torch.testing.assert_close(getattr(captured, key), getattr(eager, key), rtol=0, atol=1e-5)


@needs_cuda
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cuda_mixed_precision_training_step(dtype):
    """Training under autocast on CUDA: the deformable sampling's gradient has no half-precision CUDA kernel in torch,
    so the fast path sums in float32; every parameter still gets a finite gradient."""
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs())).cuda().train()
    pixel_values = torch.randn(2, 3, 64, 96, device="cuda")
    masks = [torch.zeros(2, 64, 96, dtype=torch.bool, device="cuda") for _ in range(2)]
    for m in masks:
        m[0, :32], m[1, 32:] = True, True
    labels = [torch.tensor([0, 1], device="cuda") for _ in range(2)]
    with torch.autocast("cuda", dtype=dtype):
        loss = model(pixel_values, mask_labels=masks, class_labels=labels).loss
    loss.backward()
    assert torch.isfinite(loss)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing[:5]
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize("shape", [(2, 3, 157, 221), (1, 3, 61, 93)])
def test_fast_paths_equal_the_plain_code_of_exportable(shape):
    """The whole model with every fast path (gathers, slabs, in-place sums, the embedding-bag sampler, q/k/v before
    windows) against the plain code that exports run (pad/roll windows, grid_sample): same outputs, and exportable()
    restores the fast paths when it ends."""
    from mask2former.modeling.fast_paths import exportable, use_fast_paths
    from mask2former.modeling.pixel_decoder import DeformableEncoderLayer

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs())).eval()
    encoder_layers = [m for m in model.modules() if isinstance(m, DeformableEncoderLayer)]
    assert encoder_layers
    for layer in encoder_layers:
        layer.slab_tokens = 256  # encoder slabs even on these small maps
    pixel_values = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        fast = model(pixel_values, output_auxiliary_logits=True)
        with exportable():
            assert not use_fast_paths()
            plain = model(pixel_values, output_auxiliary_logits=True)
        assert use_fast_paths()
    for key in ("masks_queries_logits", "class_queries_logits"):
        torch.testing.assert_close(getattr(fast, key), getattr(plain, key), rtol=0, atol=1e-4)
    for fast_aux, plain_aux in zip(fast.auxiliary_logits, plain.auxiliary_logits, strict=True):
        torch.testing.assert_close(fast_aux["class_queries_logits"], plain_aux["class_queries_logits"], rtol=0,
                                   atol=1e-4)
