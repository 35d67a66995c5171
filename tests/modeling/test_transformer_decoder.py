"""Masked-attention transformer decoder: parity with transformers' Mask2FormerTransformerModule and invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mask2former.modeling.transformer_decoder import (
    MaskedAttentionTransformer,
    TransformerDecoderOutput,
    attention_mask_from_logits,
    multi_head_attention,
)

transformers = pytest.importorskip("transformers")
from transformers import Mask2FormerConfig, Mask2FormerModel, SwinConfig  # noqa: E402
from transformers.models.mask2former.modeling_mask2former import Mask2FormerTransformerModule  # noqa: E402

HIDDEN, HEADS, FFN, MASK_DIM = 32, 4, 48, 16
EVEN_SIZES = [(2, 3), (4, 6), (8, 12)]  # coarsest first
ODD_SIZES = [(2, 3), (4, 5), (8, 9)]
ATOL = 1e-5


def build_pair(
    *, in_channels: int, decoder_layers: int, num_queries: int, pre_norm: bool = False, enforce: bool = False
) -> tuple[Mask2FormerTransformerModule, MaskedAttentionTransformer]:
    """A randomised reference module and ours loaded (strictly) with its weights."""
    config = Mask2FormerConfig(
        hidden_dim=HIDDEN,
        num_attention_heads=HEADS,
        dim_feedforward=FFN,
        decoder_layers=decoder_layers,
        num_queries=num_queries,
        mask_feature_size=MASK_DIM,
        pre_norm=pre_norm,
        enforce_input_projection=enforce,
    )
    reference = Mask2FormerTransformerModule(in_features=in_channels, config=config).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1.0 + 0.3 * torch.randn_like(param))
            elif param.dim() == 1:  # biases, several of them zero by default
                param.copy_(0.1 * torch.randn_like(param))
    ours = MaskedAttentionTransformer(
        in_channels=in_channels,
        hidden_dim=HIDDEN,
        num_queries=num_queries,
        num_heads=HEADS,
        dim_feedforward=FFN,
        num_layers=decoder_layers - 1,
        mask_dim=MASK_DIM,
        pre_norm=pre_norm,
        enforce_input_projection=enforce,
    ).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, ours


def make_inputs(
    in_channels: int, sizes: list[tuple[int, int]], batch: int = 2
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Random features; mask features that give non-trivial masks at every level.

    The mask features are a per-channel constant (some queries' masks are then negative everywhere: fully masked
    rows) plus a smooth field (a sign change inside coarse maps: partly masked rows) plus a little noise.
    """
    features = [torch.randn(batch, in_channels, h, w) for h, w in sizes]  # (B, C, H_l, W_l)
    size = (2 * sizes[-1][0], 2 * sizes[-1][1])  # (H4, W4)
    offset = 3.0 * torch.randn(batch, MASK_DIM, 1, 1)  # (B, M, 1, 1)
    smooth = F.interpolate(torch.randn(batch, MASK_DIM, 2, 2), size=size, mode="bilinear", align_corners=False)
    mask_features = offset + smooth + 0.2 * torch.randn(batch, MASK_DIM, *size)  # (B, M, H4, W4)
    return features, mask_features


def max_error(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


CASES = {
    "post_norm": dict(in_channels=HIDDEN, decoder_layers=4, num_queries=5, sizes=EVEN_SIZES),
    "pre_norm": dict(in_channels=HIDDEN, decoder_layers=4, num_queries=5, sizes=EVEN_SIZES, pre_norm=True),
    "enforce_projection_odd": dict(
        in_channels=HIDDEN, decoder_layers=10, num_queries=13, sizes=ODD_SIZES, enforce=True
    ),
    "projection_pre_norm_odd": dict(in_channels=24, decoder_layers=10, num_queries=13, sizes=ODD_SIZES, pre_norm=True),
    "two_decoder_layers": dict(in_channels=24, decoder_layers=2, num_queries=13, sizes=EVEN_SIZES),
    "one_decoder_layer": dict(in_channels=HIDDEN, decoder_layers=1, num_queries=5, sizes=ODD_SIZES),
}


@pytest.mark.parametrize("case", list(CASES))
def test_matches_transformers(case: str) -> None:
    torch.manual_seed(1)
    params = dict(CASES[case])
    sizes = params.pop("sizes")
    reference, ours = build_pair(**params)
    features, mask_features = make_inputs(params["in_channels"], sizes)
    num_layers = params["decoder_layers"] - 1

    with torch.no_grad():
        expected = reference(features, mask_features, output_hidden_states=True, output_attentions=True)
        explicit = ours(features, mask_features, output_attentions=True)
        fused = ours(features, mask_features)

    assert isinstance(explicit, TransformerDecoderOutput)
    assert fused.attentions is None
    assert len(explicit.hidden_states) == len(expected.hidden_states) == num_layers + 1
    assert len(explicit.intermediate_states) == len(expected.intermediate_hidden_states) == num_layers + 1
    assert len(explicit.masks_queries_logits) == len(expected.masks_queries_logits) == num_layers + 1
    assert len(explicit.attentions) == len(expected.attentions) == num_layers

    errors = {}
    for out in (explicit, fused):
        pairs = [("last_hidden_state", out.last_hidden_state, expected.last_hidden_state)]  # (B, Q, C)
        pairs += [("hidden_states", a, b) for a, b in zip(out.hidden_states, expected.hidden_states)]  # (Q, B, C)
        pairs += [
            ("intermediate_states", a, b) for a, b in zip(out.intermediate_states, expected.intermediate_hidden_states)
        ]  # (Q, B, C)
        pairs += [("masks", a, b) for a, b in zip(out.masks_queries_logits, expected.masks_queries_logits)]
        if out.attentions is not None:
            pairs += [("attentions", a, b) for a, b in zip(out.attentions, expected.attentions)]  # (B, h, Q, Q)
        for name, a, b in pairs:
            errors[name] = max(errors.get(name, 0.0), max_error(a, b))
    assert all(error < ATOL for error in errors.values()), errors
    torch.testing.assert_close(explicit.hidden_states[-1], explicit.last_hidden_state.transpose(0, 1))

    if num_layers:
        # the inputs must exercise masked attention: partly masked rows and rows that fall back to "attend everywhere"
        partial = full = 0
        for index in range(num_layers):
            logits = expected.masks_queries_logits[index]
            resized = F.interpolate(logits, size=sizes[index % 3], mode="bilinear", align_corners=False)
            blocked = resized.sigmoid().flatten(2) < 0.5  # (B, Q, H*W)
            full += int(blocked.all(-1).sum())
            partial += int((blocked.any(-1) & ~blocked.all(-1)).sum())
        assert partial > 0 and full > 0, (partial, full)


def test_batch_equals_single_images() -> None:
    torch.manual_seed(1)
    _, ours = build_pair(in_channels=24, decoder_layers=4, num_queries=5, pre_norm=False)
    features, mask_features = make_inputs(24, ODD_SIZES, batch=2)
    with torch.no_grad():
        batched = ours(features, mask_features, output_attentions=True)
        for i in range(2):
            single = ours([f[i : i + 1] for f in features], mask_features[i : i + 1], output_attentions=True)
            torch.testing.assert_close(
                single.last_hidden_state, batched.last_hidden_state[i : i + 1], atol=ATOL, rtol=0
            )
            for a, b in zip(single.intermediate_states, batched.intermediate_states):
                torch.testing.assert_close(a, b[:, i : i + 1], atol=ATOL, rtol=0)
            for a, b in zip(single.masks_queries_logits, batched.masks_queries_logits):
                torch.testing.assert_close(a, b[i : i + 1], atol=ATOL, rtol=0)
            for a, b in zip(single.attentions, batched.attentions):
                torch.testing.assert_close(a, b[i : i + 1], atol=ATOL, rtol=0)


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(2)
    _, ours = build_pair(in_channels=24, decoder_layers=4, num_queries=5)
    ours.train()
    features, mask_features = make_inputs(24, EVEN_SIZES)
    features = [f.requires_grad_() for f in features]
    out = ours(features, mask_features.requires_grad_())
    loss = out.last_hidden_state.square().mean()
    loss = loss + sum(s.square().mean() for s in out.intermediate_states)
    loss = loss + sum(m.sigmoid().mean() for m in out.masks_queries_logits)
    loss.backward()
    missing = [name for name, p in ours.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    assert all(f.grad is not None and f.grad.abs().sum() > 0 for f in features + [mask_features])


def test_levels_without_layers_get_no_gradient() -> None:
    # with a single layer only level 0 is attended: level 1 and 2's projections and level embeddings legitimately get
    # no gradient
    torch.manual_seed(3)
    _, ours = build_pair(in_channels=24, decoder_layers=2, num_queries=5)
    features, mask_features = make_inputs(24, EVEN_SIZES)
    out = ours(features, mask_features)
    (out.last_hidden_state.sum() + sum(m.sum() for m in out.masks_queries_logits)).backward()
    missing = {name for name, p in ours.named_parameters() if p.grad is None}
    assert missing == {f"input_projections.{i}.{k}" for i in (1, 2) for k in ("weight", "bias")}
    assert ours.level_embed.weight.grad[1:].abs().sum() == 0 and ours.level_embed.weight.grad[0].abs().sum() > 0


def test_attention_mask_is_detached() -> None:
    # the prediction head reaches the final queries only through the attention masks; they carry no gradient
    torch.manual_seed(4)
    _, ours = build_pair(in_channels=HIDDEN, decoder_layers=4, num_queries=5)
    features, mask_features = make_inputs(HIDDEN, EVEN_SIZES)
    out = ours(features, mask_features.requires_grad_())
    out.last_hidden_state.sum().backward()
    head = [name for name, p in ours.named_parameters() if p.grad is not None and name.startswith("decoder.")]
    assert head and not any(name.startswith(("decoder.layernorm", "decoder.mask_predictor")) for name in head)
    assert mask_features.grad is None


def test_attention_mask_from_logits() -> None:
    logits = torch.full((1, 3, 4, 4), 5.0, requires_grad=True)  # (B, Q, H4, W4)
    with torch.no_grad():
        logits[0, 1] = -5.0  # fully masked query -> attends everywhere
        logits[0, 2, :, :2] = -5.0  # left half masked
    blocked = attention_mask_from_logits(logits, (2, 2))  # (B, Q, 4)
    assert blocked.dtype == torch.bool and not blocked.requires_grad
    assert blocked.tolist() == [[[False] * 4, [False] * 4, [True, False, True, False]]]


def test_fused_attention_matches_explicit() -> None:
    torch.manual_seed(5)
    q, k, v = torch.randn(2, 7, 16), torch.randn(2, 11, 16), torch.randn(2, 11, 16)  # (B, Q, C), (B, L, C)
    blocked = torch.rand(2, 7, 11) < 0.6  # (B, Q, L)
    blocked[..., 0] = False
    for mask in (None, blocked):
        explicit, weights = multi_head_attention(q, k, v, 4, blocked=mask, need_weights=True)
        fused, none = multi_head_attention(q, k, v, 4, blocked=mask)
        assert none is None and weights.shape == (2, 4, 7, 11)
        torch.testing.assert_close(fused, explicit, atol=1e-6, rtol=0)
    assert (weights[blocked[:, None].expand_as(weights)] == 0).all()


def test_initialisation_follows_transformers() -> None:
    # compare per-tensor statistics with the transformer module of a freshly initialised (tiny) Mask2FormerModel
    torch.manual_seed(6)
    swin = SwinConfig(
        embed_dim=16, depths=[1] * 4, num_heads=[1] * 4, out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = Mask2FormerConfig(
        backbone_config=swin,
        feature_size=64,
        mask_feature_size=32,
        hidden_dim=32,
        num_attention_heads=4,
        dim_feedforward=96,
        decoder_layers=2,
        num_queries=64,
        init_xavier_std=0.7,
        encoder_layers=1,
        encoder_feedforward_dim=32,
    )
    reference = Mask2FormerModel(config).transformer_module.state_dict()
    ours = MaskedAttentionTransformer(
        in_channels=64,
        hidden_dim=32,
        num_queries=64,
        num_heads=4,
        dim_feedforward=96,
        num_layers=1,
        mask_dim=32,
        init_xavier_std=0.7,
    ).state_dict()
    assert reference.keys() == ours.keys()
    for name, expected in reference.items():
        actual = ours[name]
        if (expected == 0).all() or (expected == 1).all():
            assert torch.equal(actual, expected), name
        else:
            assert actual.std().item() == pytest.approx(expected.std().item(), rel=0.3), name
            assert actual.abs().max().item() == pytest.approx(expected.abs().max().item(), rel=0.3), name
