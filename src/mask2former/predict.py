"""Prediction: images in, segmentations out, as data and as pictures.

:class:`Predictor` wraps a model and its image processor: PIL images in, :class:`Prediction` objects out (a map and
a list of segments with label, score, area, bounding box and COCO RLE); :func:`draw_prediction` draws one. Running a
predictor over files and writing its results (``mask2former predict``) is :mod:`mask2former.predict_folder`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

TASKS = ("panoptic", "instance", "semantic")
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")


# ------------------------------------------------------------------------------------------------ bundled assets


def demo_model_dir() -> Path:
    """The bundled demo model (``mask2former/assets/demo_model``): trained by ``recipes/train_demo_model.sh``."""
    return Path(str(resources.files("mask2former.assets") / "demo_model"))


def bundled_examples() -> list[Path]:
    """The bundled example images (``mask2former/assets/examples``): held-out synthetic scenes."""
    folder = Path(str(resources.files("mask2former.assets") / "examples"))
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# -------------------------------------------------------------------------------------------------- predictor


@dataclass
class Prediction:
    """One image's segmentation.

    ``segmentation`` is (H, W) int64: for panoptic and instance, segment ids (0 = no segment; an instance map shows
    the best-scoring instance where instances overlap); for semantic, the class id of every pixel.
    ``segments``: one dict per segment (per class present, for semantic) with ``id`` (its value in the map; the class
    id for semantic), ``label_id``, ``label``, ``score`` (None for semantic), ``area`` (pixels), ``bbox`` (COCO
    ``[x, y, width, height]``) and ``rle`` (COCO compressed RLE ``{"size": [H, W], "counts": str}``; for instances
    the whole mask, overlaps included).
    """

    task: str
    segmentation: np.ndarray
    segments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def height(self) -> int:
        return int(self.segmentation.shape[0])

    @property
    def width(self) -> int:
        return int(self.segmentation.shape[1])


def _mask_bbox(mask: np.ndarray) -> list[int]:
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]


def _segment(mask: np.ndarray, segment_id: int, label_id: int, score: float | None,
             id2label: Mapping[int, str]) -> dict[str, Any]:
    from mask2former.postprocess import rle

    return {"id": int(segment_id), "label_id": int(label_id), "label": id2label.get(int(label_id), str(label_id)),
            "score": None if score is None else round(float(score), 4), "area": int(mask.sum()),
            "bbox": _mask_bbox(mask), "rle": rle.encode(mask)}


class Predictor:
    """A model and its processor, ready to segment images: ``predictor(images) -> list[Prediction]``.

    Args:
        model: a ``Mask2FormerForUniversalSegmentation`` (already on its device and in its dtype), or another backend
            with its call signature and outputs (:class:`mask2former.export.OnnxRuntimeModel`).
        processor: the ``Mask2FormerImageProcessor`` that prepares images for it.
        task: ``panoptic``, ``instance`` or ``semantic`` post-processing.
        threshold, mask_threshold, overlap_mask_area_threshold: the post-processing thresholds (transformers'
            meaning and defaults); ``label_ids_to_fuse``: panoptic classes whose segments merge into one.
    """

    def __init__(self, model: Any, processor: Any, task: str = "panoptic", *, threshold: float = 0.5,
                 mask_threshold: float = 0.5, overlap_mask_area_threshold: float = 0.8,
                 label_ids_to_fuse: set[int] | None = None) -> None:
        if task not in TASKS:
            raise ValueError(f"task={task!r} is not one of {', '.join(TASKS)}.")
        self.model = model.eval()
        self.processor = processor
        self.task = task
        self.threshold, self.mask_threshold = threshold, mask_threshold
        self.overlap_mask_area_threshold = overlap_mask_area_threshold
        self.label_ids_to_fuse = label_ids_to_fuse

    @classmethod
    def from_pretrained(cls, model: str | os.PathLike[str] | None = None, task: str = "panoptic", *,
                        device: str = "auto", dtype: str | torch.dtype = "fp32", size: int | None = None,
                        **thresholds: Any) -> "Predictor":
        """Load a model directory or hub id (default: the bundled demo model) and its processor.

        A directory written by ``mask2former export`` (it holds ``model.onnx``) runs in ONNX Runtime
        (:class:`mask2former.export.OnnxRuntimeModel`, the ``onnx`` extra): same processor, same post-processing;
        ``dtype`` is then the exported one.

        ``device``: ``auto`` (CUDA when there is one), ``cpu`` or ``cuda``; ``dtype``: ``fp32``, ``fp16`` or ``bf16``
        (the run dtype, whatever the stored one); ``size``: the processor's shortest edge (the longest edge keeps its
        ratio to it). The processor comes from ``preprocessor_config.json`` next to the weights, else the default one.
        """
        from mask2former import Mask2FormerForUniversalSegmentation
        from mask2former.preprocess import Mask2FormerImageProcessor

        source = str(model) if model is not None else str(demo_model_dir())
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise RuntimeError("device cuda was asked for, but this machine has no CUDA device; use --device cpu.")
        torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
        local = Path(source).expanduser()
        if local.is_dir() and (local / "model.onnx").is_file():  # written by mask2former export: onnxruntime
            from mask2former.export.runtime import OnnxRuntimeModel

            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if str(device).startswith("cuda") else None
            network = OnnxRuntimeModel.from_pretrained(local, providers=providers)
        else:
            network = Mask2FormerForUniversalSegmentation.from_pretrained(source, device=device, dtype=torch_dtype)
        if local.is_dir():
            has_config = (local / "preprocessor_config.json").is_file()
            processor = Mask2FormerImageProcessor.from_pretrained(local) if has_config else Mask2FormerImageProcessor()
        else:
            try:
                processor = Mask2FormerImageProcessor.from_pretrained(source)
            except (OSError, ValueError):  # a hub repository without preprocessor_config.json
                processor = Mask2FormerImageProcessor()
        if size is not None:
            config = processor.to_dict()
            old = config.get("size") or {}
            new = {"shortest_edge": int(size)}
            if "shortest_edge" in old and "longest_edge" in old:
                new["longest_edge"] = int(round(size * old["longest_edge"] / old["shortest_edge"]))
            processor = Mask2FormerImageProcessor.from_dict({**config, "size": new})
        return cls(network, processor, task, **thresholds)

    @property
    def id2label(self) -> dict[int, str]:
        return {int(k): str(v) for k, v in self.model.config.id2label.items()}

    @property
    def device(self) -> torch.device:
        if isinstance(self.model, torch.nn.Module):
            return next(self.model.parameters()).device
        return self.model.device  # another backend (mask2former.export.OnnxRuntimeModel)

    @property
    def dtype(self) -> torch.dtype:
        if isinstance(self.model, torch.nn.Module):
            return next(self.model.parameters()).dtype
        return self.model.dtype

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Segment a batch of RGB images (any sizes); the maps have each image's own size."""
        if not images:
            return []
        sizes = [(image.height, image.width) for image in images]
        inputs = self.processor(list(images), return_tensors="pt")
        outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.dtype),
                             pixel_mask=inputs["pixel_mask"].to(self.device))
        id2label = self.id2label
        predictions = []
        if self.task == "panoptic":
            results = self.processor.post_process_panoptic_segmentation(
                outputs, threshold=self.threshold, mask_threshold=self.mask_threshold,
                overlap_mask_area_threshold=self.overlap_mask_area_threshold,
                label_ids_to_fuse=self.label_ids_to_fuse, target_sizes=sizes)
            for result in results:
                ids = result["segmentation"].cpu().numpy().astype(np.int64)  # (H, W), 0 = no segment
                segments = [_segment(ids == info["id"], info["id"], info["label_id"], info["score"], id2label)
                            for info in result["segments_info"]]
                predictions.append(Prediction("panoptic", ids, segments))
        elif self.task == "instance":
            results = self.processor.post_process_instance_segmentation(
                outputs, threshold=self.threshold, mask_threshold=self.mask_threshold,
                overlap_mask_area_threshold=self.overlap_mask_area_threshold, target_sizes=sizes,
                return_binary_maps=True)
            for result, (height, width) in zip(results, sizes):
                masks = result["segmentation"].cpu().numpy().astype(bool).reshape(-1, height, width)  # (N, H, W)
                info = result["segments_info"]
                order = sorted(range(len(info)), key=lambda k: -info[k]["score"])  # best first
                ids = np.zeros((height, width), dtype=np.int64)
                segments = []
                for rank, k in enumerate(order, start=1):
                    segments.append(_segment(masks[k], rank, info[k]["label_id"], info[k]["score"], id2label))
                for rank in range(len(order), 0, -1):  # paint the worst first: the best ends on top
                    ids[masks[order[rank - 1]]] = rank
                predictions.append(Prediction("instance", ids, segments))
        else:
            for labels in self.processor.post_process_semantic_segmentation(outputs, target_sizes=sizes):
                labels = labels.cpu().numpy().astype(np.int64)  # (H, W) class ids
                segments = [_segment(labels == label, label, label, None, id2label) for label in np.unique(labels)]
                predictions.append(Prediction("semantic", labels, segments))
        return predictions


def draw_prediction(image: Image.Image, prediction: Prediction, *, side_by_side: bool = False,
                    alpha: float = 0.6, legend: bool | None = None, max_side: int | None = None,
                    plain: bool = False) -> Image.Image:
    """The overlay picture of a prediction (see :mod:`mask2former.visualize`); semantic maps get a legend by
    default, panoptic and instance maps captions "label 97%".

    ``max_side``: draw at most this many pixels along the longer side (a photo and its map larger than that are
    reduced first: the photo with a box filter, the map by nearest pixel); the segments keep their full-size data.
    ``plain``: the whole-image reference painter."""
    from mask2former.visualize import draw_segmentation, draw_semantic

    segmentation = prediction.segmentation  # (H, W)
    if max_side and max(image.height, image.width) > max_side:
        image, segmentation = reduce_for_drawing(image, segmentation, max_side)
    if prediction.task == "semantic":
        id2label = {s["label_id"]: s["label"] for s in prediction.segments}
        return draw_semantic(image, segmentation, id2label=id2label, ignore_index=None, alpha=alpha,
                             legend=True if legend is None else legend, side_by_side=side_by_side, plain=plain)
    return draw_segmentation(image, segmentation, prediction.segments, alpha=alpha,
                             legend=bool(legend), side_by_side=side_by_side, plain=plain)


def reduce_for_drawing(image: Image.Image, segmentation: np.ndarray,
                       max_side: int) -> tuple[Image.Image, np.ndarray]:
    """The photo and its (H, W) map at most ``max_side`` pixels along the longer side, same aspect: the photo box-
    filtered, the map sampled at each reduced pixel's centre (ids stay ids)."""
    height, width = segmentation.shape
    scale = max_side / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    photo = image.resize((new_w, new_h), Image.Resampling.BOX)
    rows = np.minimum(((np.arange(new_h) + 0.5) * height / new_h).astype(np.int64), height - 1)  # (h,)
    cols = np.minimum(((np.arange(new_w) + 0.5) * width / new_w).astype(np.int64), width - 1)  # (w,)
    return photo, segmentation[rows[:, None], cols[None, :]]  # (h, w)


def save_overlay(picture: Image.Image, path: Path, *, plain: bool = False) -> None:
    """Write an overlay PNG with fast zlib compression (level 1: a 6000x4000 overlay in a fraction of the time of
    Pillow's default level 6, for a somewhat larger file); ``plain``: Pillow's default."""
    picture.save(path, format="PNG", **({} if plain else {"compress_level": 1}))
