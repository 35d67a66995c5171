"""The loss of the full model: parity with transformers on the same weights and targets, gradients, edge cases,
mixed precision, tuple outputs and gradient checkpointing.

Random points in the parity tests: the matcher and the importance sampling draw with ``torch.rand`` on the global
generator, in the same order and with the same shapes as transformers, and neither forward pass draws anything else
(dropout and drop-path are 0), so seeding the global generator identically before each forward gives both models the
same points.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from helpers import randomize_, tiny_config_kwargs, transformers_config

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from mask2former.loss import LOSS_TERMS
from mask2former.modeling.builder import build_criterion

TOL = 1e-4  # the acceptance bound; the measured errors are printed with -s
NUM_POINTS = 300  # fewer than the default 12544 to keep the tests fast; the sampling code path is the same


def _targets(counts, height: int, width: int, num_labels: int, seed: int = 1):
    """Blocky binary masks at (height, width), e.g. the processor's padded size, and their classes."""
    gen = torch.Generator().manual_seed(seed)
    masks, labels = [], []
    for n in counts:
        coarse = (torch.rand(1, n, 6, 9, generator=gen) > 0.5).float()  # (1, N, 6, 9)
        fine = F.interpolate(coarse, size=(height, width), mode="nearest")[0] if n else torch.zeros(0, height, width)
        masks.append(fine)  # (N, H, W)
        labels.append(torch.randint(0, num_labels, (n,), generator=gen))
    return masks, labels


def _model(seed: int = 0, **overrides) -> Mask2FormerForUniversalSegmentation:
    config = Mask2FormerConfig(**tiny_config_kwargs(train_num_points=NUM_POINTS, **overrides))
    torch.manual_seed(seed)
    return randomize_(Mask2FormerForUniversalSegmentation(config), seed)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """transformers' model with random weights, and ours loaded from its save_pretrained directory."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    ref = transformers.Mask2FormerForUniversalSegmentation(
        transformers_config(**tiny_config_kwargs(train_num_points=NUM_POINTS))
    )
    randomize_(ref, 0)
    path = tmp_path_factory.mktemp("loss") / "ref"
    ref.save_pretrained(path)
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(path)
    return ref.train(), ours.train()


# --------------------------------------------------------------------------------------------- parity with transformers


@pytest.mark.parametrize(
    "counts, size",
    [((3, 0, 2), (61, 93)), ((2, 4), (64, 96)), ((0, 0), (64, 64))],
    ids=["odd-size-targets-one-empty", "padded-size-targets", "every-image-empty"],
)
@pytest.mark.parametrize("class_cost", ["class_weight", 1.0])
def test_loss_and_every_term_match_transformers(pair, counts, size, class_cost):
    """Targets at the input's own resolution (not 4x the mask logits), with empty images, for both matcher conventions.

    The installed transformers matches with ``class_weight`` as the class cost (our default, like the original);
    older releases used 1.0. Setting the same class cost on both sides covers both.
    """
    ref, ours = pair
    if class_cost == 1.0:
        ours.criterion = build_criterion(ours.config, matcher_class_cost=1.0)
        ref.criterion.matcher.cost_class = 1.0
    else:
        assert ref.criterion.matcher.cost_class == ours.criterion.matcher.cost_class == ours.config.class_weight
    try:
        height, width = size
        pixel_values = torch.randn(len(counts), 3, height, width, generator=torch.Generator().manual_seed(2))
        masks, labels = _targets(counts, height, width, ours.config.num_labels)

        torch.manual_seed(7)
        got = ours(pixel_values, mask_labels=masks, class_labels=labels)
        torch.manual_seed(7)
        expected = ref(pixel_values, mask_labels=masks, class_labels=labels, output_auxiliary_logits=True)
        # transformers returns only the total; its per-term values come from its own get_loss_dict on its outputs
        torch.manual_seed(7)
        expected_terms = ref.get_loss_dict(
            expected.masks_queries_logits, expected.class_queries_logits, masks, labels, expected.auxiliary_logits
        )
    finally:
        ours.criterion = build_criterion(ours.config)
        ref.criterion.matcher.cost_class = ref.config.class_weight

    assert set(got.loss_dict) == set(expected_terms)
    assert len(got.loss_dict) == len(LOSS_TERMS) * ours.config.decoder_layers
    errors = {name: abs(got.loss_dict[name].item() - expected_terms[name].item()) for name in expected_terms}
    total_error = abs(got.loss.item() - expected.loss.item())
    print(counts, size, class_cost, f"loss {got.loss.item():.4f} total err {total_error:.1e}",
          {name: f"{err:.1e}" for name, err in sorted(errors.items())})
    assert total_error < TOL
    assert max(errors.values()) < TOL, errors
    assert abs(sum(expected_terms.values()).item() - expected.loss.item()) < TOL  # the oracle is self-consistent
    if sum(counts):
        assert got.loss_dict["loss_mask"].item() > 0 and got.loss_dict["loss_dice_0"].item() > 0
    else:
        assert got.loss_dict["loss_mask"].item() == 0 and got.loss_dict["loss_dice"].item() == 0


# ------------------------------------------------------------------------------------------------------- gradients


def test_backward_reaches_every_trainable_parameter():
    """Every parameter, backbone to class head, gets a non-zero finite gradient from the loss.

    (The tiny config uses all four backbone stages and three decoder layers, so all three memory levels are read. With
    fewer than three decoder layers the unused levels' ``level_embed`` rows get no gradient: see
    tests/modeling/test_transformer_decoder.py.)
    """
    model = _model().train()
    masks, labels = _targets((3, 1), 64, 64, model.config.num_labels)
    model(torch.randn(2, 3, 64, 64), mask_labels=masks, class_labels=labels).loss.backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    zero = [name for name, p in model.named_parameters() if not p.grad.abs().gt(0).any()]
    assert not zero, zero


def test_every_image_empty_gives_finite_loss_and_gradients():
    model = _model().train()
    masks, labels = _targets((0, 0), 64, 64, model.config.num_labels)
    out = model(torch.randn(2, 3, 64, 64), mask_labels=masks, class_labels=labels)
    assert torch.isfinite(out.loss) and out.loss.item() > 0  # all queries are pushed towards "no object"
    out.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_auxiliary_loss_switch_is_honoured():
    model = _model(use_auxiliary_loss=False).train()
    masks, labels = _targets((2, 1), 64, 64, model.config.num_labels)
    out = model(torch.randn(2, 3, 64, 64), mask_labels=masks, class_labels=labels)
    assert set(out.loss_dict) == set(LOSS_TERMS)


# --------------------------------------------------------------------------------------- mixed precision and outputs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_keeps_matching_and_loss_in_fp32(dtype):
    model = _model().train()
    pixel_values = torch.randn(2, 3, 64, 64)
    masks, labels = _targets((3, 1), 64, 64, model.config.num_labels)

    torch.manual_seed(5)
    reference = model(pixel_values, mask_labels=masks, class_labels=labels).loss
    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=dtype):
        out = model(pixel_values, mask_labels=masks, class_labels=labels)
    assert out.class_queries_logits.dtype == dtype  # the network did run in low precision
    assert out.loss.dtype == torch.float32 and all(v.dtype == torch.float32 for v in out.loss_dict.values())
    torch.testing.assert_close(out.loss, reference.detach(), rtol=0.05, atol=0.0)
    out.loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_return_dict_false_puts_the_loss_first():
    """(loss, class logits, mask logits, ...): the loss dict is an attribute only, so tuple positions do not move."""
    model = _model().train()
    pixel_values = torch.randn(2, 3, 64, 64)
    masks, labels = _targets((1, 2), 64, 64, model.config.num_labels)
    torch.manual_seed(0)
    as_dict = model(pixel_values, mask_labels=masks, class_labels=labels)
    torch.manual_seed(0)
    as_tuple = model(pixel_values, mask_labels=masks, class_labels=labels, return_dict=False)
    assert isinstance(as_tuple, tuple)
    assert torch.equal(as_tuple[0], as_dict.loss)
    assert torch.equal(as_tuple[1], as_dict.class_queries_logits)
    assert torch.equal(as_tuple[2], as_dict.masks_queries_logits)
    assert len(as_tuple) == len(as_dict.to_tuple())
    as_tuple[0].backward()


# ------------------------------------------------------------------------------------------- gradient checkpointing


def _loss_and_grads(model, pixel_values, masks, labels):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    loss = model(pixel_values, mask_labels=masks, class_labels=labels).loss
    loss.backward()
    return loss.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


@pytest.mark.parametrize("drop_path", [0.0, 0.3], ids=["deterministic", "drop-path"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(drop_path):
    """Checkpointing replays the random state, so even stochastic depth gives identical results."""
    model = _model(backbone=dict(depths=[2, 2, 2, 2], drop_path_rate=drop_path)).train()
    pixel_values = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    masks, labels = _targets((2, 1), 64, 64, model.config.num_labels)

    plain_loss, plain_grads = _loss_and_grads(model, pixel_values, masks, labels)

    # every checkpointed layer is entered twice: forward, then recomputation in backward (which may stop early,
    # once the saved tensors it needs are rebuilt, so a pre-hook counts the calls)
    layers = [
        model.model.pixel_level_module.encoder.encoder.layers[0].blocks[0],
        model.model.pixel_level_module.decoder.encoder.layers[0],
        model.model.transformer_module.decoder.layers[0],
    ]
    calls = [0] * len(layers)
    handles = [
        layer.register_forward_pre_hook(lambda *_, i=i: calls.__setitem__(i, calls[i] + 1))
        for i, layer in enumerate(layers)
    ]
    assert not model.is_gradient_checkpointing
    model.gradient_checkpointing_enable()
    assert model.is_gradient_checkpointing
    checkpointed_loss, checkpointed_grads = _loss_and_grads(model, pixel_values, masks, labels)
    for handle in handles:
        handle.remove()
    assert calls == [2, 2, 2], calls

    assert (checkpointed_loss - plain_loss).abs().item() <= 1e-6
    assert set(checkpointed_grads) == set(plain_grads)
    errors = {name: (checkpointed_grads[name] - plain_grads[name]).abs().max().item() for name in plain_grads}
    assert max(errors.values()) <= 1e-6, max(errors.items(), key=lambda item: item[1])

    model.gradient_checkpointing_disable()
    assert not model.is_gradient_checkpointing


def test_gradient_checkpointing_is_inactive_in_eval_and_without_grad():
    model = _model()
    model.gradient_checkpointing_enable()
    block = model.model.pixel_level_module.encoder.encoder.layers[0].blocks[0]
    calls = []
    block.register_forward_pre_hook(lambda *_: calls.append(1))
    pixel_values = torch.randn(1, 3, 64, 64)
    model.eval()
    model(pixel_values).masks_queries_logits.sum().backward()  # eval mode: run directly
    model.train()
    with torch.no_grad():
        model(pixel_values)  # no graph: run directly
    assert len(calls) == 2


def test_gradient_checkpointing_on_the_bare_model_and_kwargs():
    from mask2former import Mask2FormerModel

    body = Mask2FormerModel(Mask2FormerConfig(**tiny_config_kwargs()))
    body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert body.pixel_level_module.decoder.encoder.gradient_checkpointing
    assert body.transformer_module.gradient_checkpointing
    assert all(stage.gradient_checkpointing for stage in body.pixel_level_module.encoder.encoder.layers)
    with pytest.raises(ValueError, match="non-reentrant"):
        body.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": True})


def test_activation_checkpointing_names_used_by_transformers_trainer():
    model = _model()
    model.activation_checkpointing_enable(activation_checkpointing_kwargs=None, every_n_layers=1, offload=False)
    assert model.is_activation_checkpointing and model.is_gradient_checkpointing
    model.activation_checkpointing_disable()
    assert not model.is_gradient_checkpointing
    with pytest.raises(ValueError, match="every_n_layers"):
        model.activation_checkpointing_enable(every_n_layers=2)
