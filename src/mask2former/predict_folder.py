"""``mask2former predict`` as a library call: run a :class:`~mask2former.predict.Predictor` over image files and
write, per image, an overlay PNG and a JSON of segments, and optionally the COCO files that ``mask2former evaluate``
reads.

- :func:`collect_images` turns files, folders and glob patterns into a list of image paths.
- :func:`predict_to_folder` runs the predictor and writes the outputs. Under ``torch.distributed`` each process
  takes every ``world_size``-th image and the main process writes the combined COCO JSON.

No argv and no environment reads here: ``cli.py`` parses options and joins the process group.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from mask2former import distributed
from mask2former.predict import IMAGE_SUFFIXES, Prediction, Predictor, draw_prediction, save_overlay
from mask2former.preprocess.read import READ_ERRORS, read_image

OVERLAY_MAX_SIDE = 2048  # overlays of bigger photos are drawn reduced (the segments JSON keeps full size)

_GLOB_CHARS = set("*?[")


class InputError(ValueError):
    """An input argument names no image: a missing path, an empty folder, a pattern that matches nothing."""


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
    rank, world_size = distributed.current()
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
    distributed.barrier(world_size)  # every process has checked the outputs before any writes
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

    gathered = distributed.gather((entries, failures, len(summary.written)), world_size)
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
    distributed.barrier(world_size)  # the combined files exist when any process returns
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
