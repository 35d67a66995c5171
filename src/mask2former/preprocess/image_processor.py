"""``Mask2FormerImageProcessor``: images and label maps in, model inputs out; model outputs in, segmentations out."""

from __future__ import annotations

import inspect
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..postprocess import (  # noqa: F401  (the run-length helpers: importable here, as from transformers' module)
    binary_mask_to_rle,
    convert_segmentation_to_rle,
    instance_segmentation,
    panoptic_segmentation,
    semantic_segmentation,
)
from .batch import affine_coefficients, images_to_batch
from .inputs import (
    array_to_hwc,
    image_size,
    layout_name,
    per_image,
    split_batch,
    to_channels,
    to_label_map,
    to_rgb,
    warn_if_already_rescaled,
)
from .resize import as_resample, output_size, resize_labels
from .steps import SIZE_KEYS as _SIZE_KEYS
from .steps import normalize, pad, rescale, resize
from .targets import encode_label_map

PREPROCESSOR_CONFIG_NAME = "preprocessor_config.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_SIZE = {"shortest_edge": 800, "longest_edge": 1333}
# Keys that transformers writes or used to write and that carry no setting of their own here.
_IGNORED_KEYS = {"image_processor_type", "feature_extractor_type", "processor_class", "do_pad",
                 "default_to_square", "data_format", "input_data_format", "return_tensors", "device"}


class BatchFeature(dict):
    """The processor's output: a dict with attribute access and ``.to(device or dtype)`` like transformers'."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error

    def to(self, *args: Any, **kwargs: Any) -> "BatchFeature":
        """Move tensors (also inside lists); a dtype applies to floating-point tensors only."""
        dtype = next((a for a in args if isinstance(a, torch.dtype)), kwargs.pop("dtype", None))
        device = next((a for a in args if not isinstance(a, torch.dtype)), kwargs.pop("device", None))

        def move(value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                value = value.to(device=device) if device is not None else value
                return value.to(dtype) if dtype is not None and value.is_floating_point() else value
            if isinstance(value, list):
                return [move(item) for item in value]
            return value

        return BatchFeature({key: move(value) for key, value in self.items()})


def _size_dict(size: Any, max_size: int | None = None) -> dict[str, int]:
    """Accept the config's spellings: a dict, an int (shortest edge) or an (height, width) pair."""
    if size is None:
        size = dict(DEFAULT_SIZE)
        if max_size is not None:
            size["longest_edge"] = int(max_size)
        return size
    if isinstance(size, int):
        return {"shortest_edge": size} | ({"longest_edge": int(max_size)} if max_size is not None else {})
    if isinstance(size, (list, tuple)) and len(size) == 2:
        return {"height": int(size[0]), "width": int(size[1])}
    if isinstance(size, Mapping):
        unknown = set(size) - set(_SIZE_KEYS)
        if unknown:
            raise ValueError(f"Unknown size keys {sorted(unknown)}; use {list(_SIZE_KEYS)}.")
        return {key: int(value) for key, value in size.items() if value is not None}
    raise ValueError(f"size must be a dict, an int or a (height, width) pair, got {size!r}.")


def _per_channel(values: float | Sequence[float]) -> list[float]:
    """A scalar -> three values (one per RGB channel); a sequence -> its values, one per channel."""
    array = np.asarray(values, dtype=np.float64)
    return np.broadcast_to(array, (3,)).tolist() if array.ndim == 0 else array.reshape(-1).tolist()


def _tensor_kind(return_tensors: Any) -> str | None:
    kind = getattr(return_tensors, "value", return_tensors)
    if kind not in (None, "pt", "np"):
        raise ValueError(f"return_tensors must be 'pt', 'np' or None, got {return_tensors!r}.")
    return kind


class Mask2FormerImageProcessor:
    """Prepares images (and training targets) for Mask2Former and turns its outputs into segmentations.

    Images are converted to RGB (unless ``do_convert_rgb=False``: then they keep their channels, and
    ``image_mean``/``image_std`` need one value per channel), resized (by default the short side to 800, the long
    side at most 1333, then each side rounded up to a multiple of ``size_divisor``), rescaled, normalised and padded
    at the bottom/right to the largest image of the batch. The arguments and the ``preprocessor_config.json`` schema
    are those of transformers; where the results differ, docs/processing.md says how and why.
    """

    model_input_names = ["pixel_values", "pixel_mask"]

    def __init__(
        self,
        do_resize: bool = True,
        size: Mapping[str, int] | int | None = None,
        size_divisor: int = 32,
        resample: int = 2,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        ignore_index: int | None = None,
        do_reduce_labels: bool = False,
        num_labels: int | None = None,
        pad_size: Mapping[str, int] | None = None,
        do_convert_rgb: bool | None = True,
        **legacy: Any,
    ) -> None:
        max_size = legacy.pop("max_size", legacy.pop("_max_size", None))
        do_reduce_labels = legacy.pop("reduce_labels", do_reduce_labels)
        size_divisor = legacy.pop("size_divisibility", size_divisor)
        unknown = set(legacy) - _IGNORED_KEYS
        if unknown:
            raise TypeError(f"Mask2FormerImageProcessor got unexpected arguments {sorted(unknown)}.")
        self.do_resize = bool(do_resize)
        self.size = _size_dict(size, max_size)
        self.size_divisor = int(size_divisor or 0)
        self.resample = int(as_resample(resample))
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = _per_channel(IMAGENET_MEAN if image_mean is None else image_mean)
        self.image_std = _per_channel(IMAGENET_STD if image_std is None else image_std)
        self.do_convert_rgb = do_convert_rgb  # None: as True (transformers' None keeps the channels)
        self.ignore_index = ignore_index
        self.do_reduce_labels = bool(do_reduce_labels)
        self.num_labels = num_labels
        self.pad_size = None if pad_size is None else _size_dict(pad_size)

    # ------------------------------------------------------------------------------------------------ preprocessing

    def __call__(self, images: Any, segmentation_maps: Any = None,
                 instance_id_to_semantic_id: Mapping[int, int] | Sequence[Mapping[int, int]] | None = None,
                 **kwargs: Any) -> BatchFeature:
        """Same as :meth:`preprocess`."""
        return self.preprocess(images, segmentation_maps, instance_id_to_semantic_id, **kwargs)

    def preprocess(
        self,
        images: Any,
        segmentation_maps: Any = None,
        instance_id_to_semantic_id: Mapping[int, int] | Sequence[Mapping[int, int]] | None = None,
        do_resize: bool | None = None,
        size: Mapping[str, int] | int | None = None,
        size_divisor: int | None = None,
        resample: int | None = None,
        do_rescale: bool | None = None,
        rescale_factor: float | None = None,
        do_normalize: bool | None = None,
        image_mean: float | Sequence[float] | None = None,
        image_std: float | Sequence[float] | None = None,
        ignore_index: int | None = None,
        do_reduce_labels: bool | None = None,
        return_tensors: str | None = None,
        input_data_format: str | None = None,
        pad_size: Mapping[str, int] | None = None,
        data_format: str = "channels_first",
        do_convert_rgb: bool | None = None,
        **ignored: Any,
    ) -> BatchFeature:
        """Images (PIL, numpy or torch; HWC or CHW; one or a list) -> ``pixel_values`` (B, 3, H, W), ``pixel_mask``.

        With ``segmentation_maps`` (one (H, W) map of ids per image; a map of another size than its image is resized
        to the image's output size, nearest neighbour, which needs ``do_resize``) also ``mask_labels`` (one
        (N_i, H, W) bool tensor per image) and ``class_labels`` (one (N_i,) int64 tensor per image); maps are
        instance ids when ``instance_id_to_semantic_id`` (one dict, or one per image) is given.
        """
        unknown = set(ignored) - _IGNORED_KEYS
        if unknown:
            raise TypeError(f"preprocess got unexpected arguments {sorted(unknown)}.")
        if layout_name(data_format) != "channels_first":
            raise ValueError("Only data_format='channels_first' is supported; the model expects (B, 3, H, W).")
        do_resize = self.do_resize if do_resize is None else do_resize
        size = self.size if size is None else _size_dict(size)
        size_divisor = self.size_divisor if size_divisor is None else size_divisor
        resample = as_resample(self.resample if resample is None else resample)

        convert = self.do_convert_rgb if do_convert_rgb is None else do_convert_rgb
        to_array = to_rgb if convert is not False else to_channels
        rgb = [to_array(image, input_data_format) for image in split_batch(images)]
        warn_if_already_rescaled(rgb, self.do_rescale if do_rescale is None else do_rescale)
        sizes = [image_size(image) for image in rgb]
        maps = self._label_maps(segmentation_maps, sizes, same_size=not do_resize)
        if do_resize:
            sizes = [output_size(height, width, size, size_divisor) for height, width in sizes]
            if maps is not None:
                maps = [resize_labels(label_map, h, w) for label_map, (h, w) in zip(maps, sizes)]
        coefficients = affine_coefficients(
            self.do_rescale if do_rescale is None else do_rescale,
            self.rescale_factor if rescale_factor is None else rescale_factor,
            self.do_normalize if do_normalize is None else do_normalize,
            self.image_mean if image_mean is None else image_mean,
            self.image_std if image_std is None else image_std,
            channels=3 if not isinstance(rgb[0], np.ndarray) else rgb[0].shape[2],
        )
        padded = self._padded_size(sizes, pad_size)
        pixel_values, pixel_mask = images_to_batch(rgb, sizes, resample if do_resize else None, padded, coefficients)
        return self._finish(pixel_values, pixel_mask, maps, instance_id_to_semantic_id, ignore_index,
                            do_reduce_labels, return_tensors)

    def encode_inputs(
        self,
        pixel_values_list: Any,
        segmentation_maps: Any = None,
        instance_id_to_semantic_id: Mapping[int, int] | Sequence[Mapping[int, int]] | None = None,
        ignore_index: int | None = None,
        do_reduce_labels: bool | None = None,
        return_tensors: str | None = None,
        input_data_format: str | None = None,
        pad_size: Mapping[str, int] | None = None,
        **legacy: Any,
    ) -> BatchFeature:
        """Pad already preprocessed images (no resize, rescale or normalisation) and encode their label maps.

        Takes the same map arguments as :meth:`preprocess`; maps must have their image's height and width.
        """
        if "reduce_labels" in legacy:
            do_reduce_labels = legacy.pop("reduce_labels")
        if legacy:
            raise TypeError(f"encode_inputs got unexpected arguments {sorted(legacy)}.")
        layout = layout_name(input_data_format)
        images = []
        for image in split_batch(pixel_values_list):
            array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
            images.append(array_to_hwc(array, layout).astype(np.float32, copy=False))  # (H, W, C)
        if any(image.shape[2] != images[0].shape[2] for image in images):
            raise ValueError("All images passed to encode_inputs must have the same number of channels.")
        maps = self._label_maps(segmentation_maps, [image.shape[:2] for image in images])
        padded = self._padded_size([image.shape[:2] for image in images], pad_size)
        batch = torch.zeros(len(images), images[0].shape[2], *padded, dtype=torch.float32)
        pixel_mask = torch.zeros(len(images), *padded, dtype=torch.int64)
        for index, image in enumerate(images):
            h, w = image.shape[:2]
            batch[index, :, :h, :w] = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
            pixel_mask[index, :h, :w] = 1
        return self._finish(batch, pixel_mask, maps, instance_id_to_semantic_id, ignore_index, do_reduce_labels,
                            return_tensors)

    def _label_maps(self, segmentation_maps: Any, sizes: list[tuple[int, int]],
                    same_size: bool = True) -> list[np.ndarray] | None:
        """One (H, W) int64 map per image; with ``same_size`` each must have its image's size (else it is resized
        with its image)."""
        if segmentation_maps is None:
            return None
        if isinstance(segmentation_maps, (np.ndarray, torch.Tensor)) and segmentation_maps.ndim == 3 and len(
            sizes
        ) > 1:
            segmentation_maps = list(segmentation_maps)  # (B, H, W)
        maps = [to_label_map(m) for m in split_batch(segmentation_maps, "segmentation maps")]
        if len(maps) != len(sizes):
            raise ValueError(f"Got {len(maps)} segmentation maps for {len(sizes)} images; pass one map per image.")
        for index, (label_map, size) in enumerate(zip(maps, sizes)):
            if same_size and label_map.shape != tuple(size):
                raise ValueError(
                    f"Segmentation map {index} is {label_map.shape[0]}x{label_map.shape[1]} but its image is "
                    f"{size[0]}x{size[1]}; without resizing (do_resize=False) maps must have their image's height "
                    "and width."
                )
        return maps

    def _padded_size(self, sizes: list[tuple[int, int]], pad_size: Mapping[str, int] | None) -> tuple[int, int]:
        largest = (max(h for h, _ in sizes), max(w for _, w in sizes))
        pad_size = self.pad_size if pad_size is None else pad_size
        if pad_size is None:
            return largest
        padded = (int(pad_size["height"]), int(pad_size["width"]))
        if padded[0] < largest[0] or padded[1] < largest[1]:
            raise ValueError(f"pad_size {padded} is smaller than the largest image {largest}; raise pad_size.")
        return padded

    def _finish(self, pixel_values: torch.Tensor, pixel_mask: torch.Tensor, maps: list[np.ndarray] | None,
                instance_id_to_semantic_id: Any, ignore_index: int | None, do_reduce_labels: bool | None,
                return_tensors: Any) -> BatchFeature:
        kind = _tensor_kind(return_tensors)
        out = BatchFeature()
        if kind == "pt":
            out["pixel_values"], out["pixel_mask"] = pixel_values, pixel_mask
        elif kind == "np":
            out["pixel_values"], out["pixel_mask"] = pixel_values.numpy(), pixel_mask.numpy()
        else:
            out["pixel_values"], out["pixel_mask"] = list(pixel_values.numpy()), list(pixel_mask.numpy())
        if maps is None:
            return out
        ignore_index = self.ignore_index if ignore_index is None else ignore_index
        do_reduce_labels = self.do_reduce_labels if do_reduce_labels is None else do_reduce_labels
        mapping_types = (Mapping, list, tuple)
        if instance_id_to_semantic_id is not None and not isinstance(instance_id_to_semantic_id, mapping_types):
            raise ValueError("instance_id_to_semantic_id must be a dict or a list with one dict per image.")
        mappings = per_image(instance_id_to_semantic_id, len(maps), "instance_id_to_semantic_id mappings")
        padded = tuple(pixel_values.shape[-2:])
        mask_labels, class_labels = [], []
        for index, (label_map, mapping) in enumerate(zip(maps, mappings)):
            masks, classes = encode_label_map(label_map, padded, mapping, ignore_index, do_reduce_labels, index)
            mask_labels.append(torch.from_numpy(masks) if kind == "pt" else masks)
            class_labels.append(torch.from_numpy(classes) if kind == "pt" else classes)
        out["mask_labels"], out["class_labels"] = mask_labels, class_labels
        return out

    # ---------------------------------------------------------------------------------------------- post-processing

    def post_process_semantic_segmentation(self, outputs: Any, target_sizes: Any = None,
                                           return_segmentation_scores: bool = False) -> list[Any]:
        """One (H, W) int64 map of class ids per image, at ``target_sizes`` or else at the image's unpadded size.

        Each pixel takes the class maximising sum over queries of softmax(class logits)[class] * sigmoid(mask).
        With ``return_segmentation_scores`` each image gives ``{"segmentation", "segmentation_scores"}`` (also as
        attributes): the map and those (K, H, W) float32 sums it is the argmax of.
        """
        return semantic_segmentation(outputs, target_sizes, return_scores=return_segmentation_scores)

    def post_process_instance_segmentation(
        self,
        outputs: Any,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        target_sizes: Any = None,
        return_coco_annotation: bool = False,
        return_binary_maps: bool = False,
    ) -> list[dict]:
        """Instances per image: ``{"segmentation": ..., "segments_info": [{"id", "label_id", "was_fused", "score"}]}``.

        The 100 best (query, class) pairs are scored as class probability x mean mask probability inside the mask
        (pixels with probability > ``mask_threshold``); those scoring >= ``threshold`` with a non-empty mask are kept,
        best first. ``segmentation`` is, by default, an (H, W) int32 map of instance ids (-1 = none), each pixel going
        to the best-scoring instance covering it, after dropping instances that keep less than
        ``overlap_mask_area_threshold`` of their mask; with ``return_binary_maps`` an (N, H, W) bool tensor and with
        ``return_coco_annotation`` a list of COCO RLE dicts, one full (possibly overlapping) mask per kept instance.
        """
        return instance_segmentation(outputs, threshold, mask_threshold, overlap_mask_area_threshold,
                                                 target_sizes, return_coco_annotation, return_binary_maps)

    def post_process_panoptic_segmentation(
        self,
        outputs: Any,
        threshold: float = 0.5,
        mask_threshold: float = 0.5,
        overlap_mask_area_threshold: float = 0.8,
        label_ids_to_fuse: set[int] | None = None,
        target_sizes: Any = None,
    ) -> list[dict]:
        """Panoptic segments per image: ``{"segmentation": (H, W) int32 ids (0 = none), "segments_info": [...]}``.

        Queries whose best class is not "no object" with probability > ``threshold`` compete per pixel by
        score x mask probability; a query keeps the pixels it wins where its probability >= ``mask_threshold`` and
        is dropped if the pixels it wins are fewer than ``overlap_mask_area_threshold`` x its own mask area. Queries
        of a class in ``label_ids_to_fuse`` share one segment.
        """
        return panoptic_segmentation(outputs, threshold, mask_threshold, overlap_mask_area_threshold,
                                                 label_ids_to_fuse, target_sizes)

    # ------------------------------------------------------------------------------------------------ serialisation

    def to_dict(self) -> dict[str, Any]:
        """The ``preprocessor_config.json`` content, in transformers' schema."""
        config = {
            "do_convert_rgb": self.do_convert_rgb,
            "do_normalize": self.do_normalize,
            "do_reduce_labels": self.do_reduce_labels,
            "do_rescale": self.do_rescale,
            "do_resize": self.do_resize,
            "image_mean": list(self.image_mean),
            "image_processor_type": "Mask2FormerImageProcessor",
            "image_std": list(self.image_std),
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "size": dict(self.size),
            "size_divisor": self.size_divisor,
        }
        for key in ("ignore_index", "num_labels", "pad_size"):
            if getattr(self, key) is not None:
                config[key] = getattr(self, key)
        return config

    def to_json_string(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    def to_json_file(self, json_file_path: str | os.PathLike[str]) -> None:
        Path(json_file_path).write_text(self.to_json_string(), encoding="utf-8")

    @classmethod
    def from_json_file(cls, json_file: str | os.PathLike[str]) -> "Mask2FormerImageProcessor":
        return cls.from_dict(json.loads(Path(json_file).read_text(encoding="utf-8")))

    @classmethod
    def from_dict(cls, config: Mapping[str, Any], **kwargs: Any) -> Any:
        """Build from a config dict; keys that are not settings of this processor are ignored. ``kwargs`` override
        settings (as arguments) and attributes; with ``return_unused_kwargs=True`` returns ``(processor, unused)``,
        the keywords that are neither."""
        return_unused = kwargs.pop("return_unused_kwargs", False)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "legacy"}
        accepted |= {"max_size", "_max_size", "reduce_labels", "size_divisibility"}
        merged = {key: value for key, value in {**config, **kwargs}.items() if key in accepted}
        processor = cls(**merged)
        unused = {}
        for key, value in kwargs.items():
            if key in accepted:
                continue
            if hasattr(processor, key) and not callable(getattr(processor, key)):
                setattr(processor, key, value)
            else:
                unused[key] = value
        return (processor, unused) if return_unused else processor

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | os.PathLike[str], **kwargs: Any) -> Any:
        """Load ``preprocessor_config.json`` from a directory (or its ``subfolder``), a JSON file or a hub id;
        ``kwargs`` override it (see :meth:`from_dict`)."""
        hub_keys = ("revision", "cache_dir", "local_files_only", "token", "subfolder")
        hub_kwargs = {key: kwargs.pop(key) for key in hub_keys if key in kwargs}
        path = Path(path_or_hub_id).expanduser()
        if path.is_file():
            config_file = path
        else:
            from ..hub import resolve_file  # lazy: huggingface_hub is only needed for hub ids

            config_file = resolve_file(path_or_hub_id, PREPROCESSOR_CONFIG_NAME, **hub_kwargs)
        with open(config_file, encoding="utf-8") as handle:
            return cls.from_dict(json.load(handle), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike[str]) -> list[str]:
        """Write ``preprocessor_config.json`` into ``save_directory`` (created if needed); returns the written files
        (that one path, as a string), as transformers does."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / PREPROCESSOR_CONFIG_NAME
        self.to_json_file(path)
        return [str(path)]

    # ------------------------------------------------------------------------------------- single steps (public)

    def resize(self, image: np.ndarray, size: Any, size_divisor: int = 0, resample: int | None = None,
               **kwargs: Any) -> np.ndarray:
        """One (C, H, W) image resized as :meth:`preprocess` does (``steps.resize``)."""
        return resize(image, size, size_divisor, resample)

    def rescale(self, image: np.ndarray, scale: float, **kwargs: Any) -> np.ndarray:
        """``image * scale`` as float32."""
        return rescale(image, scale)

    def normalize(self, image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float],
                  **kwargs: Any) -> np.ndarray:
        """``(image - mean) / std`` per channel of a (C, H, W) image."""
        return normalize(image, mean, std)

    def pad(self, images: Sequence[np.ndarray], padded_size: tuple[int, int],
            segmentation_maps: Sequence[np.ndarray] | None = None, fill: float = 0,
            ignore_index: int = 255) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
        """(C, H, W) images and (N, H, W) maps padded at the bottom/right; returns (images, pixel masks, maps)."""
        return pad(images, padded_size, segmentation_maps, fill, ignore_index)

    def __repr__(self) -> str:
        return f"{type(self).__name__} {self.to_json_string()}"
