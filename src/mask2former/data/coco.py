"""COCO panoptic and COCO instance datasets yielding the sample format of :mod:`mask2former.data.sample`."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from ..extras import require
from .formats import PathLike, categories_from_coco, read_json, read_panoptic_png, read_rgb_image
from .sample import Sample, SegmentationDataset, Transform, empty_targets


def _check_categories(annotation_file: Path, known: set[int], category_id: Any, where: str,
                      problems: list[str]) -> None:
    if not isinstance(category_id, int) or category_id not in known:
        problems.append(f"{where} has unknown category id {category_id!r}")


def raise_problems(annotation_file: Path, problems: list[str], shown: int = 10) -> None:
    """One ``ValueError`` listing every problem found in an annotation file (the first ``shown`` by name)."""
    if problems:
        more = f"; and {len(problems) - shown} more" if len(problems) > shown else ""
        raise ValueError(f"{annotation_file}: {len(problems)} problem(s): {'; '.join(problems[:shown])}{more}. Fix "
                         f"the annotations (the categories list holds the known ids).")


class CocoPanopticDataset(SegmentationDataset):
    """COCO panoptic segmentation: a JSON file plus a folder of PNGs whose colours encode segment ids.

    Args:
        image_dir: folder of the images named by ``images[*].file_name``.
        annotation_file: the panoptic JSON (``images``, ``annotations`` with ``segments_info``, ``categories`` with
            ``isthing``).
        panoptic_dir: folder of the PNGs named by ``annotations[*].file_name``.
        transform: optional ``transform(sample, rng) -> sample``.
        seed: seeds per-sample augmentation generators (see :class:`SegmentationDataset`).
    """

    def __init__(
        self,
        image_dir: PathLike,
        annotation_file: PathLike,
        panoptic_dir: PathLike,
        transform: Transform | None = None,
        seed: int | None = None,
    ):
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        self.panoptic_dir = Path(panoptic_dir)
        data = read_json(self.annotation_file)
        super().__init__(categories_from_coco(data["categories"], default_isthing=True), transform, seed)
        images = {image["id"]: image for image in data["images"]}
        known = set(self.category_id_to_label_id)
        self._items: list[tuple[dict[str, Any], dict[str, Any]]] = []  # (image entry, annotation)
        problems: list[str] = []
        for annotation in data["annotations"]:
            if annotation["image_id"] not in images:
                problems.append(f"an annotation is for unknown image id {annotation['image_id']!r}")
                continue
            for segment in annotation["segments_info"]:
                where = f"segment {segment['id']} of image {annotation['image_id']}"
                _check_categories(self.annotation_file, known, segment["category_id"], where, problems)
            self._items.append((images[annotation["image_id"]], annotation))
        raise_problems(self.annotation_file, problems)

    def __len__(self) -> int:
        return len(self._items)

    def files(self) -> list[Path]:
        """Every file the samples read: each image and its panoptic PNG."""
        return [path for index, (image, _) in enumerate(self._items)
                for path in (self.image_dir / image["file_name"], self.png_path(index))]

    def png_path(self, index: int) -> Path:
        image_entry, annotation = self._items[index]
        return self.panoptic_dir / annotation.get("file_name", Path(image_entry["file_name"]).stem + ".png")

    def panoptic_target(self, index: int) -> tuple[np.ndarray, list[dict[str, int]]]:
        """The ground truth of ``index`` as PQ input: (H, W) int32 segment ids and segments with label ids.

        The segments carry ``category_id`` = contiguous label id, so they pair with ``label_id_to_isthing``.
        Raises ``ValueError`` naming the PNG when it holds a segment id absent from ``segments_info``.
        """
        _, annotation = self._items[index]
        png = self.png_path(index)
        ids = read_panoptic_png(png)
        to_label = self.category_id_to_label_id
        segments = [
            {
                "id": int(segment["id"]),
                "category_id": to_label[int(segment["category_id"])],
                "iscrowd": int(segment.get("iscrowd", 0)),
            }
            for segment in annotation["segments_info"]
        ]
        present = np.unique(ids)
        unknown = np.setdiff1d(present[present != 0], [segment["id"] for segment in segments])
        if unknown.size:
            raise ValueError(
                f"{png}: segment ids {unknown.tolist()} have no segments_info entry in {self.annotation_file}"
            )
        return ids, segments

    def load(self, index: int) -> Sample:
        image_entry, _ = self._items[index]
        image = read_rgb_image(self.image_dir / image_entry["file_name"])
        ids, segments = self.panoptic_target(index)
        if ids.shape != image.shape[:2]:
            raise ValueError(
                f"{self.png_path(index)}: size {ids.shape} differs from image "
                f"{self.image_dir / image_entry['file_name']} size {image.shape[:2]}"
            )
        segment_ids = np.array([segment["id"] for segment in segments], dtype=np.int32)  # (N,)
        masks = ids[None] == segment_ids[:, None, None]  # (N, H, W)
        keep = masks.any(axis=(1, 2))  # segments listed in the JSON but absent from the PNG are dropped
        return {
            "image": image,
            "masks": masks[keep],
            "class_labels": np.array([s["category_id"] for s in segments], dtype=np.int64)[keep],
            "iscrowd": np.array([s["iscrowd"] for s in segments], dtype=bool)[keep],
            "image_id": image_entry["id"],
            "file_name": image_entry["file_name"],
        }


def decode_coco_segmentation(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) bool mask of a COCO ``segmentation``: polygons, uncompressed RLE, or compressed RLE (pycocotools)."""
    mask_utils = require("pycocotools.mask", "coco", "Reading COCO instance masks")

    if isinstance(segmentation, list):
        polygons = [polygon for polygon in segmentation if len(polygon) >= 6]  # fewer than 3 points: no area
        if not polygons:
            return np.zeros((height, width), dtype=bool)
        rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    elif isinstance(segmentation.get("counts"), list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    if list(rle["size"]) != [height, width]:
        raise ValueError(f"segmentation size {rle['size']} differs from image size {[height, width]}")
    return mask_utils.decode(rle).astype(bool)


class CocoInstanceDataset(SegmentationDataset):
    """COCO instance segmentation (``instances_*.json``): polygons, RLE and uncompressed RLE, crowd regions.

    Every image of the JSON is a sample, also those without annotations. Categories are all things.
    Needs pycocotools to decode masks (imported on first use).
    """

    def __init__(
        self,
        image_dir: PathLike,
        annotation_file: PathLike,
        transform: Transform | None = None,
        seed: int | None = None,
    ):
        require("pycocotools.mask", "coco", "Reading COCO instance masks")  # before a run starts, not at step 1
        self.image_dir = Path(image_dir)
        self.annotation_file = Path(annotation_file)
        data = read_json(self.annotation_file)
        super().__init__(categories_from_coco(data["categories"], default_isthing=True), transform, seed)
        self._images = sorted(data["images"], key=lambda image: image["id"])
        image_ids = {image["id"] for image in self._images}
        known = set(self.category_id_to_label_id)
        self._annotations: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        problems: list[str] = []
        for annotation in data.get("annotations", []):
            where = f"annotation {annotation.get('id')}"
            if annotation["image_id"] not in image_ids:
                problems.append(f"{where} refers to unknown image id {annotation['image_id']!r}")
                continue
            _check_categories(self.annotation_file, known, annotation["category_id"], where, problems)
            self._annotations[annotation["image_id"]].append(annotation)
        raise_problems(self.annotation_file, problems)

    def __len__(self) -> int:
        return len(self._images)

    def files(self) -> list[Path]:
        """Every file the samples read: the images."""
        return [self.image_dir / entry["file_name"] for entry in self._images]

    def load(self, index: int) -> Sample:
        entry = self._images[index]
        path = self.image_dir / entry["file_name"]
        image = read_rgb_image(path)
        height, width = image.shape[:2]
        annotations = self._annotations.get(entry["id"], [])
        sample: Sample = {"image": image, "image_id": entry["id"], "file_name": entry["file_name"]}
        if not annotations:
            return {**sample, **empty_targets(height, width)}
        masks = []
        for annotation in annotations:
            try:
                masks.append(decode_coco_segmentation(annotation["segmentation"], height, width))
            except ValueError as error:
                raise ValueError(f"{self.annotation_file}: annotation {annotation.get('id')}: {error}") from None
        masks_array = np.stack(masks)  # (N, H, W)
        keep = masks_array.any(axis=(1, 2))
        to_label = self.category_id_to_label_id
        labels = np.array([to_label[int(a["category_id"])] for a in annotations], dtype=np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool)
        return {**sample, "masks": masks_array[keep], "class_labels": labels[keep], "iscrowd": crowd[keep]}
