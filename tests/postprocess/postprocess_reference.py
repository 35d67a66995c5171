"""Straightforward full-resolution post-processing written from SPEC section 5 (and the original Mask2Former code),
plus synthetic model outputs that look like a trained model's. Used by the tests and the benchmark."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class FakeOutputs:
    """Just what post-processing reads from a model output."""

    class_queries_logits: torch.Tensor  # (B, Q, K + 1)
    masks_queries_logits: torch.Tensor  # (B, Q, h, w)
    image_sizes: torch.Tensor | None = None  # (B, 2)
    padded_size: tuple[int, int] | None = None


def realistic_outputs(batch=2, queries=20, classes=7, height=24, width=32, objects=6, seed=0, sharpness=40.0,
                      feature=25, image_sizes=None, padded_size=None) -> FakeOutputs:
    """Outputs shaped like a trained model's: a few confident queries whose masks tile the image, the other queries
    confidently "no object" with mostly negative masks. Masks come from random fields smooth over about ``feature``
    mask pixels; across a boundary the logits change by about 2 * sharpness / feature per mask pixel."""
    gen = torch.Generator().manual_seed(seed)
    field = torch.randn(batch, queries, max(3, height // feature), max(3, width // feature), generator=gen)
    field = F.interpolate(field, size=(height, width), mode="bicubic", align_corners=False)  # smooth blobs
    lead = field[:, :objects]  # each pixel belongs to the object query whose field is largest there
    top2 = lead.topk(min(2, objects), dim=1).values
    best_other = torch.where(lead >= top2[:, :1], top2[:, -1:], top2[:, :1])  # largest field of the others
    masks = torch.cat([(lead - best_other) * sharpness, (field[:, objects:] - 1.5) * sharpness], 1)  # (B, Q, h, w)
    logits = torch.randn(batch, queries, classes + 1, generator=gen)
    logits[:, :, classes] += 10.0  # most queries: confidently "no object"
    labels = torch.randint(0, classes, (batch, objects), generator=gen)
    logits[:, :objects].scatter_add_(2, labels[..., None], torch.full((batch, objects, 1), 15.0))
    if image_sizes is not None:
        image_sizes = torch.as_tensor(image_sizes, dtype=torch.long)
    return FakeOutputs(logits, masks, image_sizes, padded_size)


def random_outputs(batch=2, queries=100, classes=133, height=200, width=272, scale=3.0, seed=0) -> FakeOutputs:
    """Unstructured outputs: every logit drawn from N(0, scale^2), "no object" included."""
    gen = torch.Generator().manual_seed(seed)
    return FakeOutputs(torch.randn(batch, queries, classes + 1, generator=gen) * scale,
                       torch.randn(batch, queries, height, width, generator=gen) * scale)


def soft_outputs(batch=2, queries=100, classes=133, height=200, width=272, seed=0) -> FakeOutputs:
    """A trained model's layout at low contrast: blurry masks (logits within a few units of 0) and hesitant
    classes (the right class a few logits ahead, "no object" only slightly favoured)."""
    outputs = realistic_outputs(batch, queries, classes, height, width, objects=min(25, queries), seed=seed,
                                sharpness=3.0)
    outputs.class_queries_logits /= 4.0
    return outputs


def full_resolution_logits(outputs, index: int, target_size=None) -> torch.Tensor:
    """(Q, H, W) logits of one image: upsample to the padded size, crop the valid region, resize to the target."""
    masks = outputs.masks_queries_logits[index : index + 1].float()
    padded = outputs.padded_size or (4 * masks.shape[-2], 4 * masks.shape[-1])
    valid = tuple(outputs.image_sizes[index].tolist()) if outputs.image_sizes is not None else padded
    up = F.interpolate(masks, size=padded, mode="bilinear", align_corners=False)[..., : valid[0], : valid[1]]
    if target_size is not None and tuple(target_size) != valid:
        up = F.interpolate(up, size=tuple(target_size), mode="bilinear", align_corners=False)
    return up[0]


def reference_semantic_scores(outputs, index, target_size=None) -> torch.Tensor:
    """(K, H, W): sum_q softmax(class_q)[:-1] * sigmoid(mask_q)."""
    probs = outputs.class_queries_logits[index].float().softmax(-1)[:, :-1]
    return torch.einsum("qk,qhw->khw", probs, full_resolution_logits(outputs, index, target_size).sigmoid())


def reference_panoptic(outputs, index, threshold=0.5, mask_threshold=0.5, overlap=0.8, fuse=(), target_size=None):
    """The original Mask2Former panoptic inference, one image: (segmentation int32, segments_info)."""
    probs = outputs.class_queries_logits[index].float().softmax(-1)
    scores, labels = probs.max(-1)
    keep = (labels != probs.shape[-1] - 1) & (scores > threshold)
    mask_probs = full_resolution_logits(outputs, index, target_size).sigmoid()[keep]
    scores, labels = scores[keep], labels[keep]
    segmentation = torch.zeros(mask_probs.shape[-2:] if keep.any() else full_resolution_logits(
        outputs, index, target_size).shape[-2:], dtype=torch.int32)
    segments, fused = [], {}
    if len(scores) == 0:
        return segmentation, segments
    winner = (scores[:, None, None] * mask_probs).argmax(0)
    for k in range(len(scores)):
        label = int(labels[k])
        won = int((winner == k).sum())
        original = int((mask_probs[k] >= mask_threshold).sum())
        mask = (winner == k) & (mask_probs[k] >= mask_threshold)
        if won == 0 or original == 0 or int(mask.sum()) == 0 or won / original < overlap:
            continue
        if label in fused:
            segmentation[mask] = fused[label]["id"]
            fused[label]["score"] = max(fused[label]["score"], round(float(scores[k]), 6))
            continue
        segment = {"id": len(segments) + 1, "label_id": label, "was_fused": label in fuse,
                   "score": round(float(scores[k]), 6)}
        segments.append(segment)
        segmentation[mask] = segment["id"]
        if label in fuse:
            fused[label] = segment
    return segmentation, segments


def reference_instances(outputs, index, threshold=0.5, mask_threshold=0.5, target_size=None, top_k=100):
    """The original instance inference plus the documented thresholds: list of (score, label, bool mask), best first."""
    class_probs = outputs.class_queries_logits[index].float().softmax(-1)[:, :-1]
    num_classes = class_probs.shape[1]
    top, flat = class_probs.reshape(-1).topk(min(top_k, class_probs.numel()))
    mask_probs = full_resolution_logits(outputs, index, target_size).sigmoid()[flat // num_classes]
    binary = mask_probs > mask_threshold
    mask_scores = (mask_probs * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    final = top * mask_scores
    found = [(float(final[i]), int(flat[i] % num_classes), binary[i]) for i in range(len(flat))
             if final[i] >= threshold and binary[i].any()]
    return sorted(found, key=lambda item: -item[0])
