"""Evaluate a model on a dataset: PQ (panoptic), mask AP (instance) or mIoU (semantic), sharded over processes.

Each process predicts the images ``rank, rank + world_size, ...``; the metric states are then summed (PQ counts,
confusion matrix) or gathered (instance results) so every process returns the same numbers.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist

from mask2former import distributed
from mask2former.data.sample import masks_to_panoptic, masks_to_semantic
from mask2former.eval.instance import evaluate_instance_segmentation, masks_to_coco_results
from mask2former.eval.panoptic_quality import PanopticQuality
from mask2former.eval.semantic import ConfusionMatrix


def _distributed(world_size: int) -> bool:
    return world_size > 1 and distributed.current()[1] > 1


@torch.no_grad()
def evaluate_model(model: Any, dataset: Any, *, task: str = "panoptic", processor: Any = None, batch_size: int = 1,
                   rank: int = 0, world_size: int = 1, device: torch.device | str | None = None,
                   threshold: float = 0.5, mask_threshold: float = 0.5,
                   overlap_mask_area_threshold: float = 0.8) -> dict[str, Any]:
    """Predict every image of ``dataset`` (samples in the library's format, no augmentation) and score them.

    ``processor`` defaults to ``Mask2FormerImageProcessor()`` (shortest edge 800). Returns the metric dict of
    ``PanopticQuality.compute``, ``evaluate_instance_segmentation`` or ``ConfusionMatrix.compute``.
    """
    from mask2former.preprocess import Mask2FormerImageProcessor

    if task not in ("panoptic", "instance", "semantic"):
        raise ValueError(f"task={task!r} is not one of panoptic, instance, semantic.")
    processor = processor or Mask2FormerImageProcessor()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    pq = PanopticQuality(dataset.label_id_to_isthing, dataset.id2label) if task == "panoptic" else None
    confusion = ConfusionMatrix(len(dataset.id2label), class_names=list(dataset.id2label.values())) \
        if task == "semantic" else None
    results: list[dict[str, Any]] = []
    gt_images: list[dict[str, Any]] = []
    gt_annotations: list[dict[str, Any]] = []
    label_to_category = {c.label_id: c.category_id for c in dataset.categories}

    indices = list(range(rank, len(dataset), world_size))
    for start in range(0, len(indices), batch_size):
        samples = [dataset[i] for i in indices[start : start + batch_size]]
        images = [s["image"] for s in samples]
        sizes = [tuple(image.shape[:2]) for image in images]
        inputs = processor(images, return_tensors="pt").to(device)
        outputs = model(pixel_values=inputs["pixel_values"], pixel_mask=inputs["pixel_mask"])
        if task == "panoptic":
            predictions = processor.post_process_panoptic_segmentation(
                outputs, threshold=threshold, mask_threshold=mask_threshold,
                overlap_mask_area_threshold=overlap_mask_area_threshold, target_sizes=sizes)
            for sample, prediction in zip(samples, predictions):
                gt_ids, gt_segments = masks_to_panoptic(sample["masks"], sample["class_labels"], sample["iscrowd"])
                pred_segments = [{"id": int(s["id"]), "category_id": int(s["label_id"])}
                                 for s in prediction["segments_info"]]
                pq.update(gt_ids, gt_segments, prediction["segmentation"].cpu().numpy(), pred_segments)  # type: ignore[union-attr]
        elif task == "semantic":
            predictions = processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
            for sample, prediction in zip(samples, predictions):
                confusion.update(masks_to_semantic(sample["masks"], sample["class_labels"]),  # type: ignore[union-attr]
                                 prediction.cpu().numpy())
        else:
            predictions = processor.post_process_instance_segmentation(
                outputs, threshold=threshold, mask_threshold=mask_threshold,
                overlap_mask_area_threshold=overlap_mask_area_threshold, target_sizes=sizes,
                return_binary_maps=True)
            for sample, prediction, size in zip(samples, predictions, sizes):
                image_id = int(sample.get("image_id", len(gt_images)))
                gt_images.append({"id": image_id, "height": size[0], "width": size[1]})
                for mask, label, crowd in zip(sample["masks"], sample["class_labels"], sample["iscrowd"]):
                    ann = masks_to_coco_results(image_id, mask[None], [label_to_category[int(label)]], [1.0])[0]
                    ann.pop("score")
                    ann.update(iscrowd=int(crowd), area=float(mask.sum()), id=0)
                    gt_annotations.append(ann)
                info = prediction["segments_info"]
                if info:
                    masks = prediction["segmentation"].cpu().numpy().astype(bool)  # (N, H, W) binary maps
                    results += masks_to_coco_results(
                        image_id, masks, [label_to_category[int(s["label_id"])] for s in info],
                        [float(s["score"]) for s in info])
    if was_training:
        model.train()

    if task == "panoptic":
        if _distributed(world_size):
            stats = torch.from_numpy(pq.stats).to(device)  # type: ignore[union-attr]
            dist.all_reduce(stats)
            pq.stats = stats.cpu().numpy()  # type: ignore[union-attr]
        return pq.compute()  # type: ignore[union-attr]
    if task == "semantic":
        if _distributed(world_size):
            matrix = torch.from_numpy(confusion.matrix).to(device)  # type: ignore[union-attr]
            dist.all_reduce(matrix)
            confusion.matrix = matrix.cpu().numpy()  # type: ignore[union-attr]
        return confusion.compute()  # type: ignore[union-attr]
    if _distributed(world_size):
        gathered = distributed.gather((gt_images, gt_annotations, results), world_size)
        gt_images = [x for part in gathered for x in part[0]]
        gt_annotations = [x for part in gathered for x in part[1]]
        results = [x for part in gathered for x in part[2]]
    for number, annotation in enumerate(gt_annotations, start=1):
        annotation["id"] = number
    categories = [{"id": c.category_id, "name": c.name} for c in dataset.categories]
    ground_truth = {"images": gt_images, "annotations": gt_annotations, "categories": categories}
    return evaluate_instance_segmentation(ground_truth, results)
