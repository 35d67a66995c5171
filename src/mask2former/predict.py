"""Prediction: images in, segmentations out, as pictures and as data. The library side of ``mask2former predict``.

- :class:`Predictor` wraps a model and its image processor: PIL images in, :class:`Prediction` objects out (a map
  and a list of segments with label, score, area, bounding box and COCO RLE).
- :func:`collect_images` turns files, folders and glob patterns into a list of image paths.
- :func:`predict_to_folder` runs a predictor over image files and writes, per image, an overlay PNG and a JSON of
  segments, and optionally the COCO files that ``mask2former evaluate`` reads. Under ``torch.distributed`` each
  process takes every ``world_size``-th image and the main process writes the combined COCO JSON.

No argv and no environment reads here: ``cli.py`` parses options and sets up the process group.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from mask2former.preprocess.read import READ_ERRORS, read_image

TASKS = ("panoptic", "instance", "semantic")
OVERLAY_MAX_SIDE = 2048  # overlays of bigger photos are drawn reduced (the segments JSON keeps full size)
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")
_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input argument names no image: a missing path, an empty folder, a pattern that matches nothing."""


# ------------------------------------------------------------------------------------------------ bundled assets


def demo_model_dir() -> Path:
    """The bundled demo model (``mask2former/assets/demo_model``): trained by ``recipes/train_demo_model.sh``."""
    return Path(str(resources.files("mask2former.assets") / "demo_model"))


def bundled_examples() -> list[Path]:
    """The bundled example images (``mask2former/assets/examples``): held-out synthetic scenes."""
    folder = Path(str(resources.files("mask2former.assets") / "examples"))
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


# ----------------------------------------------------------------------------------------------------- inputs


def collect_images(inputs: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image paths named by ``inputs``, in order, each once.

    A file is taken as it is (whatever its suffix; an unreadable one is reported when it is read); a folder gives
    the image files directly inside it, sorted; a pattern with ``*``, ``?`` or ``[`` (``**`` reaches into
    subfolders) gives the image files it matches, sorted. Raises :class:`InputError` for a path that does not
    exist, a folder without images and a pattern that matches no image.
    """
    found: list[Path] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            images = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise InputError(f"{item}: the folder holds no images ({', '.join(IMAGE_SUFFIXES)}).")
            found += images
        elif _GLOB_CHARS & set(str(item)):
            matches = sorted(glob.glob(os.path.expanduser(str(item)), recursive=True))
            images = [Path(p) for p in matches if Path(p).is_file() and Path(p).suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise InputError(f"{item}: the pattern matches no image files.")
            found += images
        else:
            raise InputError(f"{item}: no such file or folder.")
    unique: dict[Path, Path] = {}
    for path in found:
        unique.setdefault(path.resolve(), path)
    return list(unique.values())


def output_names(paths: Sequence[Path]) -> list[str]:
    """A distinct output name per input: the file stem, or where stems collide, the path below the inputs' common
    folder with separators and dots turned into ``__`` and ``_`` (``a/x.jpg`` and ``b/x.jpg`` -> ``a__x``, ``b__x``).
    """
    stems = [p.stem for p in paths]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    if all(count == 1 for count in counts.values()):
        return stems
    resolved = [p.resolve() for p in paths]
    root = Path(os.path.commonpath([str(p.parent) for p in resolved]))
    names = []
    for stem, path in zip(stems, resolved):
        if counts[stem] == 1:
            names.append(stem)
            continue
        relative = path.relative_to(root)
        names.append("__".join(relative.with_suffix("").parts) + "_" + path.suffix.lstrip(".").lower())
    return names




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
        model: a ``Mask2FormerForUniversalSegmentation`` (already on its device and in its dtype).
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
        network = Mask2FormerForUniversalSegmentation.from_pretrained(source, device=device, dtype=torch_dtype)
        local = Path(source).expanduser()
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
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

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


# ------------------------------------------------------------------------------------------------- COCO outputs


@dataclass
class CocoTarget:
    """How predictions map onto a COCO dataset: category id per model label id, image id per file name.

    Without a ground-truth file the category ids are the model's label ids and image ids the inputs' positions.
    """

    category_of_label: dict[int, int]
    categories: list[dict[str, Any]]
    image_ids: dict[str, int] = field(default_factory=dict)
    unmatched_labels: list[str] = field(default_factory=list)

    @classmethod
    def from_model(cls, id2label: Mapping[int, str]) -> "CocoTarget":
        categories = [{"id": int(k), "name": name} for k, name in sorted(id2label.items())]
        return cls({int(k): int(k) for k in id2label}, categories)

    @classmethod
    def from_coco_json(cls, path: str | os.PathLike[str], id2label: Mapping[int, str]) -> "CocoTarget":
        """Match the model's label names to the categories of a COCO (panoptic or instance) JSON, and image file
        names (or stems) to its image ids. Labels with no category of that name are left out of COCO outputs."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{path} is not valid JSON ({error}).") from None
        if not isinstance(data, dict) or not isinstance(data.get("categories"), list):
            raise ValueError(f"{path}: not a COCO JSON (no 'categories' list).")
        by_name = {str(c["name"]): int(c["id"]) for c in data["categories"]}
        mapping = {int(k): by_name[name] for k, name in id2label.items() if name in by_name}
        if not mapping:
            raise ValueError(f"{path}: none of the model's labels ({', '.join(sorted(id2label.values()))}) is a "
                             f"category name there ({', '.join(sorted(by_name))}).")
        image_ids: dict[str, int] = {}
        for image in data.get("images", []):
            name = str(image["file_name"])
            image_ids[name] = int(image["id"])
            image_ids.setdefault(Path(name).stem, int(image["id"]))
        unmatched = sorted(name for name in id2label.values() if name not in by_name)
        return cls(mapping, [dict(c) for c in data["categories"]], image_ids, unmatched)

    def assign_image_ids(self, paths: Sequence[Path]) -> tuple[list[int], list[Path]]:
        """Image id per input: from the COCO file by file name or stem, else (or without one) a new id past the
        known ones. Returns the ids and the inputs the COCO file does not know."""
        if not self.image_ids:
            return list(range(len(paths))), []
        next_id = max(self.image_ids.values()) + 1
        ids, unknown = [], []
        for path in paths:
            known = self.image_ids.get(path.name, self.image_ids.get(path.stem))
            if known is None:
                known, next_id = next_id, next_id + 1
                unknown.append(path)
            ids.append(known)
        return ids, unknown


def _panoptic_entry(prediction: Prediction, image_id: int, png_name: str,
                    target: CocoTarget) -> tuple[dict, np.ndarray]:
    """COCO panoptic annotation and (H, W) ids for the PNG; segments of unmatched labels become void (0)."""
    ids = prediction.segmentation.copy()
    infos = []
    for segment in prediction.segments:
        category = target.category_of_label.get(segment["label_id"])
        if category is None:
            ids[ids == segment["id"]] = 0
            continue
        infos.append({"id": segment["id"], "category_id": category, "iscrowd": 0, "area": segment["area"],
                      "bbox": segment["bbox"], "score": segment["score"]})
    return {"image_id": image_id, "file_name": png_name, "segments_info": infos}, ids


def _instance_entries(prediction: Prediction, image_id: int, target: CocoTarget) -> list[dict]:
    return [{"image_id": image_id, "category_id": target.category_of_label[s["label_id"]], "segmentation": s["rle"],
             "score": s["score"], "bbox": s["bbox"], "area": s["area"]}
            for s in prediction.segments if s["label_id"] in target.category_of_label]


# ------------------------------------------------------------------------------------------------ folder runs


@dataclass
class PredictSummary:
    """What a :func:`predict_to_folder` run did, over all processes."""

    output_dir: Path
    num_inputs: int
    written: list[Path] = field(default_factory=list)  # this process's overlay PNGs
    num_written: int = 0  # overlays written by all processes
    failures: list[tuple[str, str]] = field(default_factory=list)  # (input path, reason), all processes
    coco_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def planned_outputs(output_dir: Path, names: Sequence[str], task: str, coco: bool) -> list[Path]:
    """Every file a run over ``names`` writes (to refuse to overwrite before anything is written)."""
    paths = [output_dir / f"{name}{suffix}" for name in names for suffix in (".png", ".json")]
    if coco and task == "panoptic":
        paths += [output_dir / "panoptic" / f"{name}.png" for name in names] + [output_dir / "panoptic.json"]
    elif coco and task == "instance":
        paths.append(output_dir / "instances_results.json")
    elif coco:
        paths += [output_dir / "semantic" / f"{name}.png" for name in names]
    return paths


def _distributed() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _gather(value: Any, world_size: int) -> list[Any]:
    if world_size == 1:
        return [value]
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, value)
    return gathered


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def predict_to_folder(
    predictor: Predictor,
    paths: Sequence[Path],
    output_dir: str | os.PathLike[str],
    *,
    batch_size: int = 1,
    coco: bool = False,
    coco_target: CocoTarget | None = None,
    overwrite: bool = False,
    side_by_side: bool = False,
    alpha: float = 0.6,
    overlay_max_side: int | None = OVERLAY_MAX_SIDE,
    progress: bool = False,
    report: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Segment image files and write the results under ``output_dir``.

    Per image ``NAME`` (see :func:`output_names`): ``NAME.png`` (overlay, at most ``overlay_max_side`` pixels along
    its longer side; ``None`` or 0: the photo's size) and ``NAME.json`` (image, size, task and :class:`Prediction`
    segments, always at the photo's size). With ``coco``: panoptic ``panoptic/NAME.png`` + ``panoptic.json``; instance
    ``instances_results.json`` (COCO results); semantic ``semantic/NAME.png`` (8-bit class ids). ``coco_target``
    sets category and image ids (default: label ids and input positions).

    An image that cannot be read is reported through ``report`` and listed in the summary; the others go on. Raises
    ``FileExistsError`` before writing anything when an output exists and ``overwrite`` is false. Under
    ``torch.distributed`` every process must call this with the same arguments; each one handles ``paths[rank::
    world_size]`` and the main process writes the combined JSON.
    """
    rank, world_size = _distributed()
    output_dir = Path(output_dir)
    report = report or (lambda message: None)
    task = predictor.task
    names = output_names(paths)
    if not overwrite:
        existing = [p for p in planned_outputs(output_dir, names, task, coco) if p.exists()]
        if existing:
            shown = ", ".join(str(p) for p in existing[:3]) + (f" and {len(existing) - 3} more" if len(existing) > 3
                                                               else "")
            raise FileExistsError(f"{len(existing)} output file(s) already exist ({shown}); pass --overwrite "
                                  f"(overwrite=True) to replace them, or choose another output folder.")
    target = coco_target or CocoTarget.from_model(predictor.id2label)
    image_ids, unknown_images = target.assign_image_ids(paths)
    if coco and task == "semantic" and max(predictor.id2label, default=0) > 254:
        raise ValueError("semantic label PNGs are 8-bit: this model has more than 255 classes.")
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # every process has checked the outputs before any writes
    output_dir.mkdir(parents=True, exist_ok=True)
    if coco and task in ("panoptic", "semantic"):
        (output_dir / task).mkdir(exist_ok=True)

    mine = list(range(rank, len(paths), world_size))
    summary = PredictSummary(output_dir, len(paths))
    entries: list[tuple[int, Any]] = []  # (input position, COCO entry or entries)
    failures: list[tuple[str, str]] = []
    bar = _progress_bar(len(mine), progress and rank == 0)
    for start in range(0, len(mine), batch_size):
        batch: list[tuple[int, Image.Image]] = []
        for position in mine[start : start + batch_size]:
            try:
                batch.append((position, read_image(paths[position])))
            except READ_ERRORS as error:
                reason = str(error).removeprefix(f"{paths[position]}: ")  # read_image names the file already
                failures.append((str(paths[position]), reason))
                report(f"skipped {paths[position]}: {reason}")
        for (position, image), prediction in zip(batch, predictor([image for _, image in batch])):
            name, path = names[position], paths[position]
            save_overlay(draw_prediction(image, prediction, side_by_side=side_by_side, alpha=alpha,
                                         max_side=overlay_max_side), output_dir / f"{name}.png")
            # the segmentation is of the picture as shown: turned by its EXIF orientation (1: as stored)
            _write_json(output_dir / f"{name}.json", {"image": str(path), "height": prediction.height,
                                                       "width": prediction.width,
                                                       "exif_orientation": image.info.get("exif_orientation", 1),
                                                       "task": task, "segments": prediction.segments})
            summary.written.append(output_dir / f"{name}.png")
            if coco:
                entries.append((position, _coco_outputs(prediction, path, name, image_ids[position], target,
                                                         output_dir)))
        if bar is not None:
            bar.update(len(mine[start : start + batch_size]))
    if bar is not None:
        bar.close()

    gathered = _gather((entries, failures, len(summary.written)), world_size)
    summary.failures = sorted(f for part in gathered for f in part[1])
    summary.num_written = sum(part[2] for part in gathered)
    if coco and task != "semantic":
        all_entries = sorted((e for part in gathered for e in part[0]), key=lambda e: e[0])
        combined = output_dir / ("panoptic.json" if task == "panoptic" else "instances_results.json")
        if rank == 0:
            if task == "panoptic":
                images = [e[1]["image"] for e in all_entries]
                annotations = [e[1]["annotation"] for e in all_entries]
                _write_json(combined, {"images": images, "annotations": annotations,
                                       "categories": target.categories})
            else:
                _write_json(combined, [result for e in all_entries for result in e[1]])
        summary.coco_files.append(combined)
    elif coco:
        summary.coco_files.append(output_dir / "semantic")
    if coco and unknown_images and task != "semantic":
        summary.notes.append(f"{len(unknown_images)} image(s) are not in the COCO file and got new image ids, e.g. "
                             f"{unknown_images[0].name}")
    if coco and target.unmatched_labels:
        summary.notes.append(f"labels with no COCO category of the same name are left out of the COCO files: "
                             f"{', '.join(target.unmatched_labels)}")
    if world_size > 1:
        import torch.distributed as dist

        dist.barrier()  # the combined files exist when any process returns
    return summary


def _coco_outputs(prediction: Prediction, path: Path, name: str, image_id: int, target: CocoTarget,
                  output_dir: Path) -> Any:
    """Write this image's COCO PNG (panoptic, semantic) and return its entry for the combined JSON."""
    from mask2former.data import write_label_png, write_panoptic_png

    if prediction.task == "panoptic":
        annotation, ids = _panoptic_entry(prediction, image_id, f"{name}.png", target)
        write_panoptic_png(output_dir / "panoptic" / f"{name}.png", ids)
        image = {"id": image_id, "file_name": path.name, "height": prediction.height, "width": prediction.width}
        return {"image": image, "annotation": annotation}
    if prediction.task == "instance":
        return _instance_entries(prediction, image_id, target)
    write_label_png(output_dir / "semantic" / f"{name}.png", prediction.segmentation)
    return None


def _progress_bar(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc="predict", unit="image", dynamic_ncols=True)
