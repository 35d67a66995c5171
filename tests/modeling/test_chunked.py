"""Row-wise blocks by slabs of tokens (CPU inference): the same numbers as one call, and only where they apply."""

from __future__ import annotations

import torch
from torch import nn

from mask2former.modeling import chunked
from mask2former.modeling.chunked import by_slabs, slabs_pay


def _feed_forward() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(24, 96), nn.GELU(), nn.Linear(96, 24)).eval()


def test_slabs_give_the_bits_of_one_call():
    block = _feed_forward()
    for shape in [(2, 1000, 24), (1, 7, 24), (3, 64, 24), (2500, 24)]:  # rows not multiples of the slab, and fewer
        x = torch.randn(shape)
        with torch.no_grad():
            whole = block(x)
            for rows in (64, 100, 999, 5000):  # slabs of at least 32 rows (BLAS rounds a handful differently)
                sliced = by_slabs(block, x, rows)
                assert sliced.shape == whole.shape
                assert torch.equal(sliced, whole), (shape, rows)


def test_slabs_only_without_gradients_and_on_cpu(monkeypatch):
    x = torch.randn(4, 300, 24)
    assert not slabs_pay(x, 64)  # gradients are being recorded
    with torch.no_grad():
        assert slabs_pay(x, 64)
        assert not slabs_pay(x, 1200)  # no more tokens than one slab
    with torch.inference_mode():
        assert slabs_pay(x, 64)
    calls = []
    block = _feed_forward()

    def counted(t):
        calls.append(t.shape[0])
        return block(t)

    out = by_slabs(counted, x.requires_grad_(), 64)  # under autograd: one call, gradients flow
    out.sum().backward()
    assert calls == [4] and x.grad is not None
    calls.clear()
    with torch.no_grad():
        by_slabs(counted, x, 500)
    assert calls == [400, 400, 400]  # 1200 tokens in three near-equal slabs of at most 500


def test_model_blocks_use_slabs_and_keep_their_numbers(monkeypatch):
    """Swin's feed-forward blocks sliced small enough to cut the first stages' maps of a tiny model."""
    from mask2former.modeling.backbones.swin import SwinBackbone

    torch.manual_seed(0)
    model = SwinBackbone(embed_dim=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], window_size=7).eval()
    x = torch.randn(2, 3, 61, 93)
    with torch.no_grad():
        whole = model(x)
        monkeypatch.setattr(chunked.by_slabs, "__defaults__", (64,))
        sliced = model(x)
    for a, b in zip(whole, sliced, strict=True):
        assert torch.equal(a, b)


def test_pixel_decoder_layer_uses_slabs_and_keeps_its_numbers(monkeypatch):
    from mask2former.modeling.pixel_decoder import DeformableEncoderLayer

    torch.manual_seed(0)
    layer = DeformableEncoderLayer(embed_dim=32, num_heads=4, num_levels=2, num_points=3, ffn_dim=128, dropout=0.0,
                                   activation="relu").eval()
    shapes = [(12, 20), (6, 10)]
    hidden = torch.randn(2, 300, 32)
    position = torch.randn(1, 300, 32)
    reference = torch.rand(1, 300, 1, 2)
    with torch.no_grad():
        whole, _ = layer(hidden, position, reference, shapes)
        monkeypatch.setattr(chunked.by_slabs, "__defaults__", (64,))
        calls = []
        feed_forward = layer._feed_forward
        monkeypatch.setattr(layer, "_feed_forward", lambda t: calls.append(len(t)) or feed_forward(t))
        sliced, _ = layer(hidden, position, reference, shapes)
    assert len(calls) == 10 and sum(calls) == 600
    assert torch.equal(whole, sliced)


def test_pixel_decoder_layer_by_query_slabs_keeps_its_numbers(monkeypatch):
    """In CPU inference a whole encoder layer runs a slab of queries at a time over one value table: same bits as
    one call (output and sampling weights), for a batch of 2 and slabs that do not divide the sequence."""
    from mask2former.modeling.pixel_decoder import DeformableEncoderLayer

    torch.manual_seed(0)
    layer = DeformableEncoderLayer(embed_dim=32, num_heads=4, num_levels=2, num_points=3, ffn_dim=128, dropout=0.0,
                                   activation="relu").eval()
    with torch.no_grad():
        for parameter in layer.parameters():  # offsets and weights that depend on the query
            parameter.normal_(0.0, 0.3)
    shapes = [(12, 20), (6, 10)]
    hidden = torch.randn(2, 300, 32)
    position = torch.randn(1, 300, 32)
    reference = torch.rand(1, 300, 1, 2)
    attends = []
    attend = layer.self_attn.attend
    monkeypatch.setattr(layer.self_attn, "attend", lambda q, *a: attends.append(q.shape[:2]) or attend(q, *a))
    with torch.no_grad():
        whole, whole_weights = layer(hidden, position, reference, shapes)
        assert attends == [(2, 300)]
        layer.slab_tokens = 130  # 65 queries of 2 images: 5 slabs of 60
        sliced, sliced_weights = layer(hidden, position, reference, shapes)
        assert attends[1:] == [(2, 60)] * 5
        no_weights, none = layer(hidden, position, reference, shapes, False)
        with torch.enable_grad():
            recorded, _ = layer(hidden.requires_grad_(), position, reference, shapes)
    assert torch.equal(whole, sliced) and torch.equal(whole_weights, sliced_weights)
    assert torch.equal(whole, no_weights) and none is None
    assert len(attends) == 12 and torch.equal(recorded, whole), "under autograd: one call"
    assert whole_weights.shape == (2, 300, 4, 2, 3)
