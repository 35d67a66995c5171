"""Post-processing against the straightforward full-resolution reference (SPEC section 5), against transformers
where the algorithms coincide, batched against single images, and COCO RLE through pycocotools."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from postprocess_reference import (
    full_resolution_logits,
    random_outputs,
    realistic_outputs,
    reference_instances,
    reference_panoptic,
    reference_semantic_scores,
    soft_outputs,
)

from mask2former import Mask2FormerImageProcessor
from mask2former.postprocess import instance_segmentation, panoptic_segmentation, semantic_segmentation

PROCESSOR = Mask2FormerImageProcessor()

# (mask h, w), padded size, valid sizes, target sizes: unpadded, padded batch up- and down-sized, no target sizes
GEOMETRIES = [
    ((24, 32), None, None, [(96, 128), (96, 128)]),
    ((24, 32), (96, 128), [(96, 128), (77, 101)], [(150, 170), (40, 50)]),
    ((30, 41), (120, 164), [(117, 150), (61, 99)], None),
]


def outputs_for(geometry, seed=0, **kwargs):
    (height, width), padded, sizes, _ = geometry
    return realistic_outputs(batch=2, height=height, width=width, padded_size=padded, image_sizes=sizes, seed=seed,
                             **kwargs)


def target(geometry, index):
    return None if geometry[3] is None else geometry[3][index]


# chunk_values: the default, and small enough that every step runs in many chunks of queries or pixels
CHUNKS = [1 << 24, 1000]


@pytest.mark.parametrize("fast", [True, False], ids=["likely-first", "every-class"])
@pytest.mark.parametrize("chunk_values", CHUNKS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_semantic_matches_reference(geometry, chunk_values, fast):
    outputs = outputs_for(geometry, classes=30, objects=4)  # 4 classes present of 30: most are unlikely
    results = semantic_segmentation(outputs, geometry[3], chunk_values=chunk_values, fast=fast)
    for index, result in enumerate(results):
        scores = reference_semantic_scores(outputs, index, target(geometry, index))
        assert result.shape == scores.shape[1:] and result.dtype == torch.int64
        top2 = scores.topk(2, dim=0).values
        clear = top2[0] - top2[1] > 1e-5  # away from exact ties, the argmax is the reference's
        assert torch.equal(result[clear], scores.argmax(0)[clear])


@pytest.mark.parametrize("chunk_values", CHUNKS)
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_panoptic_matches_reference(geometry, chunk_values):
    outputs = outputs_for(geometry, classes=5, objects=8)  # 8 objects over 5 classes: some classes repeat
    fuse = {0, 1, 2}
    results = panoptic_segmentation(outputs, label_ids_to_fuse=fuse, target_sizes=geometry[3],
                                    chunk_values=chunk_values)
    for index, result in enumerate(results):
        segmentation, segments = reference_panoptic(outputs, index, fuse=fuse, target_size=target(geometry, index))
        assert result["segmentation"].shape == segmentation.shape and result["segmentation"].dtype == torch.int32
        assert result["segments_info"] == segments
        assert (result["segmentation"] != segmentation).float().mean() < 1e-4  # only float-rounding ties may differ
    assert any(segment["was_fused"] for result in results for segment in result["segments_info"])


KINDS = {
    "trained": lambda: realistic_outputs(batch=1, queries=50, classes=60, height=40, width=56, objects=10),
    "random": lambda: random_outputs(batch=1, queries=50, classes=60, height=40, width=56),
    "soft": lambda: soft_outputs(batch=1, queries=50, classes=60, height=40, width=56),
}


@pytest.mark.parametrize("kind", KINDS)
def test_semantic_likely_classes_first_equals_every_class(kind):
    """The fast path against the reference on the three kinds of outputs the benchmark uses; 2000 values per chunk
    also sends single pixels of a chunk to the every-class scoring."""
    outputs = KINDS[kind]()
    scores = reference_semantic_scores(outputs, 0)
    top2 = scores.topk(2, dim=0).values
    clear = top2[0] - top2[1] > 1e-5
    for chunk_values in CHUNKS + [2000]:
        fast = semantic_segmentation(outputs, chunk_values=chunk_values, fast=True)[0]
        assert torch.equal(fast[clear], semantic_segmentation(outputs, fast=False)[0][clear])
        assert torch.equal(fast[clear], scores.argmax(0)[clear])


def test_an_unlikely_class_wins_where_no_likely_class_is_present():
    """Two confident queries (classes 0 and 1) cover the left half; four hesitant queries, mostly "no object" and
    spread over classes 10..39 with a lean towards class 20, cover the right half. Class 20 carries too little mass
    to be scored first, and wins the right half through the every-class scoring of the pixels the bound leaves open."""
    class_logits = torch.full((1, 6, 41), -10.0)
    class_logits[0, 0, 0] = class_logits[0, 1, 1] = 10.0
    class_logits[0, 2:, 10:40] = 0.0
    class_logits[0, 2:, 20] = 1.0
    class_logits[0, 2:, 40] = 6.0  # "no object" most likely
    masks = torch.full((1, 6, 8, 8), -20.0)
    masks[0, :2, :, :4] = 20.0
    masks[0, 2:, :, 4:] = 10.0
    outputs = SimpleNamespace(class_queries_logits=class_logits, masks_queries_logits=masks)
    fast = semantic_segmentation(outputs, fast=True)[0]
    assert torch.equal(fast, semantic_segmentation(outputs, fast=False)[0])
    assert set(fast[:, :14].unique().tolist()) <= {0, 1} and (fast[:, 18:] == 20).all()


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_output_matches_reference(kind):
    """Panoptic and instance on trained, random and soft outputs (random: low thresholds so that segments exist)."""
    outputs = KINDS[kind]()
    threshold = 0.5 if kind == "trained" else 0.02
    result = panoptic_segmentation(outputs, threshold=threshold, label_ids_to_fuse={0, 1})[0]
    segmentation, segments = reference_panoptic(outputs, 0, threshold=threshold, fuse={0, 1})
    assert result["segments_info"] == segments
    assert (result["segmentation"] != segmentation).float().mean() < 1e-4
    binary = instance_segmentation(outputs, threshold=threshold, return_binary_maps=True)[0]
    instances = reference_instances(outputs, 0, threshold=threshold)
    assert [info["label_id"] for info in binary["segments_info"]] == [label for _, label, _ in instances]
    for (score, _, mask), info, ours in zip(instances, binary["segments_info"], binary["segmentation"]):
        assert abs(info["score"] - score) < 1e-5 and (ours != mask).float().mean() < 1e-4


def test_larger_scene_matches_reference():
    """Many overlapping objects: panoptic winners and semantic classes change often within a mask pixel."""
    outputs = realistic_outputs(batch=1, height=40, width=56, queries=30, classes=5, objects=12, seed=0)
    result = PROCESSOR.post_process_panoptic_segmentation(outputs, label_ids_to_fuse={0, 1})[0]
    segmentation, segments = reference_panoptic(outputs, 0, fuse={0, 1})
    assert result["segments_info"] == segments
    assert (result["segmentation"] != segmentation).float().mean() < 1e-4
    scores = reference_semantic_scores(outputs, 0)
    top2 = scores.topk(2, dim=0).values
    clear = top2[0] - top2[1] > 1e-5
    semantic = PROCESSOR.post_process_semantic_segmentation(outputs)[0]
    assert torch.equal(semantic[clear], scores.argmax(0)[clear])


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_instance_matches_reference(geometry):
    outputs = outputs_for(geometry)
    binary = PROCESSOR.post_process_instance_segmentation(outputs, target_sizes=geometry[3], return_binary_maps=True)
    for index, result in enumerate(binary):
        instances = reference_instances(outputs, index, target_size=target(geometry, index))
        assert len(result["segments_info"]) == len(instances) > 0
        assert result["segmentation"].shape[1:] == instances[0][2].shape
        for (score, label, mask), info, ours in zip(instances, result["segments_info"], result["segmentation"]):
            assert info["label_id"] == label and abs(info["score"] - score) < 1e-5
            assert (ours != mask).float().mean() < 1e-4


@pytest.mark.parametrize("chunk_values", CHUNKS)
@pytest.mark.parametrize("threshold", [0.8, 0.97])
@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_instance_map_matches_reference(geometry, threshold, chunk_values):
    """The id map from the reference masks: each pixel to the best instance covering it; instances left with less
    than ``threshold`` of their mask dropped, the map painted again without them, ids renumbered."""
    outputs = outputs_for(geometry, seed=1)
    outputs.masks_queries_logits[:, :3] += 25.0  # three objects spill into their neighbours: masks overlap
    results = instance_segmentation(outputs, target_sizes=geometry[3], overlap_mask_area_threshold=threshold,
                                    chunk_values=chunk_values)
    dropped_any = False
    for index, result in enumerate(results):
        instances = reference_instances(outputs, index, target_size=target(geometry, index))
        masks = torch.stack([mask for _, _, mask in instances])  # (n, H, W), best first

        def paint(alive):
            covered = masks & alive[:, None, None]
            first = covered.float().argmax(0)
            return torch.where(covered.any(0), first, -1)

        alive = torch.ones(len(instances), dtype=torch.bool)
        owner = paint(alive)
        visible = torch.stack([(owner == i).sum() for i in range(len(instances))])
        alive = visible >= threshold * masks.sum((1, 2))
        dropped_any |= not bool(alive.all())
        owner = paint(alive)
        new_id = torch.cumsum(alive.long(), 0) - 1
        expected = torch.where(owner >= 0, new_id[owner.clamp(min=0)], -1)
        assert [(info["label_id"], round(info["score"], 4)) for info in result["segments_info"]] == [
            (label, round(score, 4)) for (score, label, _), kept in zip(instances, alive.tolist()) if kept]
        assert (result["segmentation"].long() != expected).float().mean() < 1e-3
    assert dropped_any or threshold == 0.8


@pytest.mark.parametrize("count", [0, 1, 255, 256, 300])
def test_owners_is_the_first_alive_instance_for_any_count(count):
    """The id map's painter (byte codes below 256 instances, int32 from 256) against a plain loop."""
    from mask2former.postprocess.instance import _owners

    gen = torch.Generator().manual_seed(count)
    masks = torch.rand(count, 500, generator=gen) > 0.97  # (N, P), best first; most pixels covered by several
    alive = torch.rand(count, generator=gen) > 0.3
    expected = torch.full((500,), -1, dtype=torch.int64)
    for i in reversed(range(count)):  # the best alive instance paints last
        if alive[i]:
            expected[masks[i]] = i
    assert torch.equal(_owners(masks, alive), expected)


def test_instance_map_resolves_overlaps_and_drops_mostly_hidden_instances():
    outputs = realistic_outputs(batch=1, queries=12, classes=4, height=20, width=20, objects=0, seed=3)
    outputs.masks_queries_logits[:] = -20.0
    outputs.class_queries_logits[:] = -10.0
    outputs.class_queries_logits[0, :3, 1] = 10.0  # three confident instances of class 1
    outputs.class_queries_logits[0, 0, 1] = 12.0  # query 0 scores highest
    outputs.masks_queries_logits[0, 0, 5:15, 5:15] = 20.0  # A: 10x10, best score
    outputs.masks_queries_logits[0, 1, 5:15, 10:20] = 20.0  # B: half hidden under A -> dropped at threshold 0.8
    outputs.masks_queries_logits[0, 2, 0:4, 0:4] = 20.0  # C: alone
    result = PROCESSOR.post_process_instance_segmentation(outputs)[0]
    assert [info["score"] > 0.9 for info in result["segments_info"]] == [True, True]
    segmentation = result["segmentation"]
    assert segmentation.shape == (80, 80) and segmentation.dtype == torch.int32
    assert set(segmentation.unique().tolist()) == {-1, 0, 1}
    assert abs(int((segmentation == 0).sum()) - 40 * 40) < 40  # A's 10x10 mask pixels, upsampled 4x (corners blur)
    kept_all = PROCESSOR.post_process_instance_segmentation(outputs, overlap_mask_area_threshold=0.4)[0]
    assert len(kept_all["segments_info"]) == 3
    maps = PROCESSOR.post_process_instance_segmentation(outputs, return_binary_maps=True)[0]["segmentation"]
    assert maps.shape == (3, 80, 80) and maps.dtype == torch.bool and (maps[0] & maps[1]).any()  # full masks


def test_coco_rle_round_trips_through_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    geometry = GEOMETRIES[1]
    outputs = outputs_for(geometry)
    binary = PROCESSOR.post_process_instance_segmentation(outputs, target_sizes=geometry[3], return_binary_maps=True)
    coco = PROCESSOR.post_process_instance_segmentation(outputs, target_sizes=geometry[3], return_coco_annotation=True)
    for maps, encoded in zip(binary, coco):
        assert len(encoded["segmentation"]) == len(maps["segmentation"]) > 0
        assert encoded["segments_info"] == maps["segments_info"]
        for mask, rle in zip(maps["segmentation"], encoded["segmentation"]):
            assert set(rle) == {"size", "counts"} and isinstance(rle["counts"], str)
            assert rle["size"] == list(mask.shape)
            assert torch.equal(torch.from_numpy(mask_utils.decode(rle)).bool(), mask)
            assert mask_utils.area(rle) == int(mask.sum())


def test_batched_image_gives_the_single_image_result():
    """Image 1 alone is 56x72 (masks 14x18); in a batch it is padded to 96x128. The model's masks in the padded area
    are its own business; here they continue the image's edge, as they would for a model that ignores padding."""
    single = realistic_outputs(batch=1, height=14, width=18, seed=5)
    batch = realistic_outputs(batch=2, height=24, width=32, seed=6, image_sizes=[(96, 128), (56, 72)],
                              padded_size=(96, 128))
    batch.masks_queries_logits[1] = F.pad(single.masks_queries_logits[0], (0, 14, 0, 10), mode="replicate")
    batch.class_queries_logits[1] = single.class_queries_logits[0]
    for targets in (None, [(96, 128), (200, 257)]):
        single_targets = None if targets is None else targets[1:]
        alone = PROCESSOR.post_process_semantic_segmentation(single, single_targets)[0]
        assert torch.equal(PROCESSOR.post_process_semantic_segmentation(batch, targets)[1], alone)
        alone = PROCESSOR.post_process_panoptic_segmentation(single, target_sizes=single_targets)[0]
        batched = PROCESSOR.post_process_panoptic_segmentation(batch, target_sizes=targets)[1]
        assert torch.equal(batched["segmentation"], alone["segmentation"])
        assert batched["segments_info"] == alone["segments_info"]
        alone = PROCESSOR.post_process_instance_segmentation(single, target_sizes=single_targets)[0]
        assert alone["segmentation"].shape == ((56, 72) if targets is None else (200, 257))
        batched = PROCESSOR.post_process_instance_segmentation(batch, target_sizes=targets)[1]
        assert torch.equal(batched["segmentation"], alone["segmentation"])
        assert batched["segments_info"] == alone["segments_info"]


def test_transformers_where_the_algorithms_coincide():
    """Unpadded 384x384 inputs (masks 96x96), no target sizes, masks saturated (probabilities 0 or 1): transformers'
    fixed 384x384 resize is then ours, and its panoptic/instance shortcuts change nothing."""
    hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
    theirs_processor = hf_module.Mask2FormerImageProcessorPil()
    outputs = realistic_outputs(batch=2, queries=100, classes=10, height=96, width=96, objects=6, sharpness=400.0,
                                seed=7)
    theirs = theirs_processor.post_process_semantic_segmentation(outputs)
    for ours, reference in zip(PROCESSOR.post_process_semantic_segmentation(outputs), theirs):
        assert (ours != reference).float().mean() < 1e-3

    theirs = theirs_processor.post_process_panoptic_segmentation(outputs, label_ids_to_fuse=set())
    for ours, reference in zip(PROCESSOR.post_process_panoptic_segmentation(outputs), theirs):
        assert ours["segments_info"] == reference["segments_info"]
        assert (ours["segmentation"] != reference["segmentation"]).float().mean() < 1e-3

    theirs = theirs_processor.post_process_instance_segmentation(outputs, return_binary_maps=True)
    for ours, reference in zip(PROCESSOR.post_process_instance_segmentation(outputs, return_binary_maps=True), theirs):
        found = sorted((info["label_id"], round(info["score"], 4)) for info in ours["segments_info"])
        assert found == sorted((info["label_id"], round(info["score"], 4)) for info in reference["segments_info"])


def test_no_segment_above_threshold_is_a_normal_result():
    outputs = realistic_outputs(batch=1, height=8, width=10, objects=0)  # every query says "no object"
    semantic = PROCESSOR.post_process_semantic_segmentation(outputs)[0]
    assert semantic.shape == (32, 40)
    panoptic = PROCESSOR.post_process_panoptic_segmentation(outputs)[0]
    assert panoptic["segments_info"] == [] and (panoptic["segmentation"] == 0).all()
    assert panoptic["segmentation"].dtype == torch.int32
    instance = PROCESSOR.post_process_instance_segmentation(outputs)[0]
    assert instance["segments_info"] == [] and (instance["segmentation"] == -1).all()
    binary = PROCESSOR.post_process_instance_segmentation(outputs, return_binary_maps=True)[0]["segmentation"]
    assert binary.shape == (0, 32, 40)
    assert PROCESSOR.post_process_instance_segmentation(outputs, return_coco_annotation=True)[0]["segmentation"] == []


def test_outputs_without_sizes_half_precision_and_tensor_targets():
    outputs = realistic_outputs(batch=2, height=12, width=16)
    plain = SimpleNamespace(class_queries_logits=outputs.class_queries_logits.half(),
                            masks_queries_logits=outputs.masks_queries_logits.half())
    targets = torch.tensor([[30, 40], [64, 50]])
    for index, result in enumerate(PROCESSOR.post_process_semantic_segmentation(plain, target_sizes=targets)):
        assert result.shape == tuple(targets[index].tolist())
    assert len(PROCESSOR.post_process_panoptic_segmentation(plain, target_sizes=targets)) == 2


@pytest.mark.parametrize("method", ["semantic", "instance", "panoptic"])
def test_target_sizes_must_match_the_batch(method):
    outputs = realistic_outputs(batch=2, height=8, width=8)
    with pytest.raises(ValueError, match="target_sizes"):
        getattr(PROCESSOR, f"post_process_{method}_segmentation")(outputs, target_sizes=[(10, 10)])


def test_coco_and_binary_maps_are_exclusive():
    with pytest.raises(ValueError, match="return_coco_annotation"):
        PROCESSOR.post_process_instance_segmentation(realistic_outputs(batch=1, height=8, width=8),
                                                     return_coco_annotation=True, return_binary_maps=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_runs_on_the_outputs_device():
    outputs = realistic_outputs(batch=2, height=24, width=32, image_sizes=[(96, 128), (70, 90)],
                                padded_size=(96, 128))
    on_gpu = SimpleNamespace(**{k: (v.cuda() if torch.is_tensor(v) else v) for k, v in vars(outputs).items()})
    for name in ("semantic", "panoptic", "instance"):
        method = getattr(PROCESSOR, f"post_process_{name}_segmentation")
        cpu, gpu = method(outputs), method(on_gpu)
        for a, b in zip(cpu, gpu):
            a, b = (a, b) if name == "semantic" else (a["segmentation"], b["segmentation"])
            assert b.device.type == "cuda" and (a != b.cpu()).float().mean() < 1e-3
    assert full_resolution_logits(outputs, 0).shape[-2:] == (96, 128)
