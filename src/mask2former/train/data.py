"""From a ``DataSpec`` to batches: datasets, augmentation recipes, a step-addressable sampler, and the collate.

The sampler defines the whole stream of sample indices as a function of (seed, position): epoch ``e`` is a fixed
permutation drawn from ``(seed, e)``. A run that resumes at step ``s`` continues the stream at ``s × global batch``,
so an interrupted and resumed run sees exactly the samples, and augmentations, of an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mask2former.train.config import DataSpec, TrainConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def build_dataset(spec: DataSpec, transform: Any = None, seed: int | None = None):
    """The dataset class for ``spec.format``, reading the paths in ``spec``."""
    from mask2former.data.coco import CocoInstanceDataset, CocoPanopticDataset
    from mask2former.data.semantic import SemanticFolderDataset

    if spec.format == "coco_panoptic":
        return CocoPanopticDataset(spec.images, spec.annotations, spec.masks, transform=transform, seed=seed)
    if spec.format == "coco_instance":
        return CocoInstanceDataset(spec.images, spec.annotations, transform=transform, seed=seed)
    return SemanticFolderDataset(spec.images, spec.masks, spec.semantic_class_names(),
                                 reduce_labels=spec.reduce_labels, transform=transform, seed=seed)


def build_train_transform(config: TrainConfig):
    """The augmentation recipe named by ``config.augmentation`` (image and masks transformed together)."""
    from mask2former.data import transforms as T

    steps: list[Any] = []
    if config.augmentation == "lsj":
        steps.append(T.LargeScaleJitter(config.crop_size, config.min_scale, config.max_scale))
    elif config.augmentation == "semantic":
        sizes = [int(config.crop_size * s / 10) for s in range(5, 21)]  # 0.5x .. 2.0x of the crop size
        steps += [T.ResizeShortestEdge(sizes, max_size=4 * config.crop_size), T.RandomCrop(config.crop_size)]
    if config.hflip:
        steps.append(T.RandomHorizontalFlip())
    if config.color_jitter:
        steps.append(T.ColorJitter())
    return T.Compose(steps) if steps else None


class TrainingDataError(ValueError):
    """The training (or validation) data cannot be used: files missing, too many unreadable."""


def check_files(dataset: Any, name: str, shown: int = 10) -> None:
    """Raise :class:`TrainingDataError` listing every file of ``dataset`` that does not exist (before a run starts)."""
    missing = [path for path in dataset.files() if not path.is_file()]
    if missing:
        listed = ", ".join(str(path) for path in missing[:shown])
        more = f" and {len(missing) - shown} more" if len(missing) > shown else ""
        raise TrainingDataError(f"{name}: {len(missing)} file(s) named by the annotations do not exist: {listed}"
                                f"{more}. Fix the paths (or remove those entries); no training step was run.")


class ReadFailures:
    """Counts training files that fail to decode; raises :class:`TrainingDataError` once more than ``limit`` (a
    share) of the dataset's samples are unreadable."""

    def __init__(self, dataset_size: int, limit: float = 0.01) -> None:
        self.dataset_size, self.limit = dataset_size, limit
        self.files: dict[str, str] = {}  # file -> reason

    def failed(self, name: str, reason: str) -> None:
        self.files.setdefault(name, reason)
        if len(self.files) > self.limit * self.dataset_size:
            first, why = next(iter(self.files.items()))
            raise TrainingDataError(
                f"{len(self.files)} of {self.dataset_size} training samples could not be read (more than "
                f"{self.limit:.0%}), e.g. {first}: {why}. Fix or remove those files, then continue with --resume.")


class StepSampler(torch.utils.data.Sampler):
    """Yields this process's micro-batches of ``(epoch, index)`` pairs, starting at global micro-batch ``start``.

    Global micro-batch ``k`` covers stream positions ``[k·B·W, (k+1)·B·W)`` (B per-process batch, W processes);
    process ``r`` takes the ``r``-th slice of ``B``. The stream concatenates per-epoch permutations.
    """

    def __init__(self, dataset_size: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 start: int = 0, num_batches: int | None = None) -> None:
        if dataset_size < 1:
            raise ValueError("the training dataset is empty.")
        self.size, self.batch_size, self.seed = dataset_size, batch_size, seed
        self.rank, self.world_size, self.start, self.num_batches = rank, world_size, start, num_batches
        self._permutations: dict[int, np.ndarray] = {}

    def _at(self, position: int) -> tuple[int, int]:
        epoch, offset = divmod(position, self.size)
        if epoch not in self._permutations:
            self._permutations = {epoch: np.random.default_rng((self.seed, epoch)).permutation(self.size)}
        return epoch, int(self._permutations[epoch][offset])

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        while self.num_batches is None or k < self.start + self.num_batches:
            first = (k * self.world_size + self.rank) * self.batch_size
            yield [self._at(first + i) for i in range(self.batch_size)]
            k += 1

    def __len__(self) -> int:
        return self.num_batches if self.num_batches is not None else 2**62


class EpochIndexed(torch.utils.data.Dataset):
    """Wraps a dataset so that an ``(epoch, index)`` key sets the epoch its augmentation is drawn for."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        """Sample ``index``; when its files cannot be read, the next readable sample, with ``skipped`` naming the
        files passed over (the training loop logs them and stops when too many fail)."""
        from mask2former.preprocess.read import READ_ERRORS

        epoch, index = key
        self.dataset.set_epoch(epoch)
        skipped: list[tuple[str, str]] = []
        for offset in range(len(self.dataset)):
            try:
                sample = self.dataset[(index + offset) % len(self.dataset)]
            except READ_ERRORS as error:
                skipped.append((_file_of(self.dataset, (index + offset) % len(self.dataset)), str(error)))
                if len(skipped) > 8:
                    break
                continue
            return {**sample, "skipped": skipped}
        raise TrainingDataError(f"none of {len(skipped)} training samples in a row could be read, e.g. "
                                f"{skipped[0][0]}: {skipped[0][1]}")


def _file_of(dataset: Any, index: int) -> str:
    files = dataset.files()
    per_sample = len(files) // max(1, len(dataset))
    return str(files[index * per_sample]) if per_sample else f"sample {index}"


def collate(samples: Sequence[dict[str, Any]], *, mean: Sequence[float] = IMAGENET_MEAN,
            std: Sequence[float] = IMAGENET_STD, drop_crowd: bool = True) -> dict[str, Any]:
    """Samples (HWC uint8 image, (N, H, W) bool masks, (N,) labels) -> model inputs.

    Images are rescaled to [0, 1], normalised and zero-padded at the bottom/right to the largest size in the batch;
    ``pixel_mask`` is 1 on real pixels (and 0 where an augmentation padded). Crowd segments are dropped from the
    training targets (they are for evaluation). Masks stay bool and at image resolution.
    """
    height = max(s["image"].shape[0] for s in samples)
    width = max(s["image"].shape[1] for s in samples)
    batch = len(samples)
    pixel_values = torch.zeros(batch, 3, height, width)  # (B, 3, H, W)
    pixel_mask = torch.zeros(batch, height, width, dtype=torch.long)  # (B, H, W)
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    mask_labels: list[Tensor] = []
    class_labels: list[Tensor] = []
    for i, sample in enumerate(samples):
        image = torch.from_numpy(np.require(sample["image"], requirements="CW")).permute(2, 0, 1)  # (3, h, w) uint8
        h, w = image.shape[1:]
        pixel_values[i, :, :h, :w] = (image.float() / 255.0 - mean_t) / std_t
        valid = sample.get("pixel_mask")
        pixel_mask[i, :h, :w] = 1 if valid is None else torch.from_numpy(np.asarray(valid, dtype=np.int64))
        keep = ~np.asarray(sample["iscrowd"], dtype=bool) if drop_crowd else np.ones(len(sample["class_labels"]), bool)
        masks = torch.zeros(int(keep.sum()), height, width, dtype=torch.bool)  # (N, H, W)
        masks[:, :h, :w] = torch.from_numpy(np.asarray(sample["masks"], dtype=bool)[keep])
        mask_labels.append(masks)
        class_labels.append(torch.from_numpy(np.asarray(sample["class_labels"], dtype=np.int64)[keep]))
    if pixel_mask.any():
        pixel_values[pixel_mask.unsqueeze(1).expand_as(pixel_values) == 0] = 0.0
    return {"pixel_values": pixel_values, "pixel_mask": pixel_mask, "mask_labels": mask_labels,
            "class_labels": class_labels, "skipped": [item for s in samples for item in s.get("skipped", ())]}
