"""The GPU check in one process: ours against transformers on the same weights and inputs, on one CUDA device.

    bash benchmarks/gpu_check.sh            # the whole check, at most ~8 minutes on an H100/H200
    python benchmarks/bench_gpu.py --only forward --models swin-tiny --batches 1

Sections (each prints its own table; a section that fails prints its error and the next one runs):

- ``forward``: Swin-T (100 queries) and Swin-L (200 queries) at 800x1088, fp32 and bf16 autocast, batch 1 and 8:
  images/s of each library (interleaved rounds), peak memory (``torch.cuda.max_memory_allocated``), agreement of
  class and mask logits (fp32 with TF32 off; bf16 against the fp32 outputs of the same library), ours replayed from
  a CUDA graph at batch 1.
- ``end-to-end``: a 480x640 photo through each library's processor, model (bf16 autocast) and panoptic
  post-processing at the original size, batch 1: images/s.
- ``half``: the bundled demo model (trained), panoptic maps in bf16 and fp16 against fp32 on the bundled examples.
- ``training``: one training step (forward, loss, backward, AdamW) of Swin-T at 2x384x384 with bf16 autocast:
  time and peak memory of ours (embedding-bag deformable sampling and ``grid_sample``) and of transformers.
- ``onnx``: Swin-T exported to ONNX (fp32 and fp16) in onnxruntime's CUDA provider against our PyTorch forward:
  export seconds, file size, images/s, ratio, agreement; skipped when onnxruntime has no CUDA provider.

Sections run while ``--budget`` seconds last; the rest are listed as skipped.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import interleaved_times, same_weights_pair  # noqa: E402

SECTIONS = ("forward", "end-to-end", "half", "training", "onnx", "profile")  # profile: only when asked for
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


DEVICE = torch.device("cuda")  # main() sets it; --device cpu is a dry run of the script itself


def autocast(dtype: torch.dtype):
    return torch.autocast(DEVICE.type, dtype=dtype, enabled=dtype != torch.float32)


def peak_memory_gib(fn: Callable[[], Any]) -> float:
    """GiB that a call of ``fn`` takes at its peak above what was allocated before it (weights, optimizer state)."""
    if DEVICE.type != "cuda":
        return float("nan")
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**30


def synchronize() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def empty_cache() -> None:
    if DEVICE.type == "cuda":
        torch.cuda.empty_cache()


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def graphed(model: torch.nn.Module, pixel_values: torch.Tensor, dtype: torch.dtype) -> Callable[[], Any]:
    """``model(pixel_values)`` captured in a CUDA graph; the returned function replays it on the same input tensor."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode(), autocast(dtype):
        for _ in range(3):  # kernels chosen and memory pooled outside the capture
            model(pixel_values)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), autocast(dtype):
        output = model(pixel_values)

    def replay():
        graph.replay()
        return output

    return replay


# ---------------------------------------------------------------------------------------------------- forward


def forward_section(args: argparse.Namespace) -> None:
    print(f"\n## forward at {args.height}x{args.width} (images/s; ratio = ours / transformers images/s)")
    print(f"{'model':11} {'dtype':5} {'batch':>5} {'ours img/s':>10} {'hf img/s':>9} {'ratio':>6} {'ours GiB':>9} "
          f"{'hf GiB':>7} {'graph img/s':>11}  agreement (max |d| masks, classes)")
    for size in args.models:
        ours, ref = same_weights_pair(size)
        ours.to(DEVICE)
        ref.to(DEVICE)
        gen = torch.Generator().manual_seed(0)
        single = torch.randn(1, 3, args.height, args.width, generator=gen).to(DEVICE)
        # fp32 agreement with TF32 off (strict fp32 products and convolutions on both sides)
        conv_tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        with torch.inference_mode():
            a32, b32 = ours(single), ref(single)
        torch.backends.cudnn.allow_tf32 = conv_tf32
        agree = {"fp32": f"{max_diff(a32.masks_queries_logits, b32.masks_queries_logits):.1e}, "
                         f"{max_diff(a32.class_queries_logits, b32.class_queries_logits):.1e} (TF32 off)"}
        for name in args.dtypes:
            dtype = DTYPES[name]
            if dtype != torch.float32:
                with torch.inference_mode(), autocast(dtype):
                    a, b = ours(single), ref(single)
                agree[name] = (f"vs own fp32: ours {max_diff(a.masks_queries_logits, a32.masks_queries_logits):.1e}"
                               f", hf {max_diff(b.masks_queries_logits, b32.masks_queries_logits):.1e}; classes ours "
                               f"{max_diff(a.class_queries_logits, a32.class_queries_logits):.1e}, hf "
                               f"{max_diff(b.class_queries_logits, b32.class_queries_logits):.1e}")
                del a, b
            for batch in args.batches:
                pixel_values = single.repeat(batch, 1, 1, 1)

                def run(model, pv=pixel_values, dt=dtype):
                    def call():
                        with torch.inference_mode(), autocast(dt):
                            return model(pv)
                    return call

                times = interleaved_times({"ours": run(ours), "ref": run(ref)}, repeat=args.repeat, warmup=2)
                t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["ref"])
                mem_ours, mem_ref = peak_memory_gib(run(ours)), peak_memory_gib(run(ref))
                graph_text = "-"
                if batch == 1 and args.cuda_graphs and DEVICE.type == "cuda":
                    try:
                        replay = graphed(ours, pixel_values, dtype)
                        graph_text = f"{1 / statistics.median(interleaved_times({'g': replay}, args.repeat)['g']):.1f}"
                        del replay
                    except Exception as error:  # noqa: BLE001 - reported, the check goes on
                        graph_text = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:60]}"
                print(f"{size:11} {name:5} {batch:5d} {batch / t_ours:10.1f} {batch / t_ref:9.1f} "
                      f"{t_ref / t_ours:6.2f} {mem_ours:9.2f} {mem_ref:7.2f} {graph_text:>11}  "
                      f"{agree[name] if batch == args.batches[0] else ''}", flush=True)
                empty_cache()
        del ours, ref, a32, b32
        empty_cache()


# ------------------------------------------------------------------------------------------------- end-to-end


def photo(height: int = 480, width: int = 640) -> np.ndarray:
    """A bundled example scene scaled to a photo's size, (H, W, 3) uint8."""
    from PIL import Image

    from mask2former.predict import bundled_examples

    with Image.open(bundled_examples()[0]) as image:
        return np.asarray(image.convert("RGB").resize((width, height), Image.BILINEAR))


def end_to_end_section(args: argparse.Namespace) -> None:
    import transformers

    from mask2former import Mask2FormerImageProcessor

    image = photo()
    print(f"\n## end-to-end: {image.shape[0]}x{image.shape[1]} photo -> shortest edge 800, bf16 autocast, batch 1, "
          "panoptic at the original size (images/s; ms = preprocess + forward + post-process, medians)")
    for size in args.e2e_models:
        ours, ref = same_weights_pair(size)
        ours.to(DEVICE)
        ref.to(DEVICE)
        pipelines, stages = {}, {"ours": [], "ref": []}
        for key, processor, model in (("ours", Mask2FormerImageProcessor(), ours),
                                      ("ref", transformers.Mask2FormerImageProcessor(), ref)):
            def run(processor=processor, model=model, key=key):
                marks = [time.perf_counter()]
                inputs = processor(image, return_tensors="pt")
                pixel_values, pixel_mask = inputs["pixel_values"].to(DEVICE), inputs["pixel_mask"].to(DEVICE)
                synchronize()
                marks.append(time.perf_counter())
                with torch.inference_mode(), autocast(torch.bfloat16):
                    outputs = model(pixel_values, pixel_mask=pixel_mask)
                synchronize()
                marks.append(time.perf_counter())
                result = processor.post_process_panoptic_segmentation(
                    outputs, target_sizes=[image.shape[:2]], label_ids_to_fuse=set())[0]
                segmentation = result["segmentation"].cpu()
                marks.append(time.perf_counter())
                stages[key].append([b - a for a, b in zip(marks, marks[1:])])
                return segmentation
            pipelines[key] = run
        times = interleaved_times(pipelines, repeat=2 * args.repeat, warmup=3)
        t_ours, t_ref = statistics.median(times["ours"]), statistics.median(times["ref"])
        split = {key: " + ".join(f"{1000 * statistics.median(column):.1f}" for column in zip(*rows[3:]))
                 for key, rows in stages.items()}
        print(f"{size:11} ours {1 / t_ours:6.1f} img/s ({1000 * t_ours:.1f} ms = {split['ours']})   transformers "
              f"{1 / t_ref:6.1f} img/s ({1000 * t_ref:.1f} ms = {split['ref']})   ratio {t_ref / t_ours:.2f}", flush=True)
        del ours, ref, pipelines
        empty_cache()


# ------------------------------------------------------------------------------------------------ half precision


def class_map(segmentation: torch.Tensor, label_of: dict[int, int]) -> torch.Tensor:
    """(H, W) segment ids -> (H, W) label ids, -1 where a pixel has no segment."""
    low = int(segmentation.min())
    table = torch.tensor([label_of.get(i, -1) for i in range(low, int(segmentation.max()) + 1)])
    return table[segmentation.long() - low]


def half_section(args: argparse.Namespace) -> None:
    from PIL import Image

    from mask2former import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor
    from mask2former.predict import bundled_examples, demo_model_dir

    model = Mask2FormerForUniversalSegmentation.from_pretrained(demo_model_dir()).float().to(DEVICE).eval()
    processor = Mask2FormerImageProcessor.from_pretrained(demo_model_dir())
    print("\n## half precision: the bundled demo model (trained), panoptic maps against fp32 on the bundled examples")
    images = [np.asarray(Image.open(p).convert("RGB")) for p in bundled_examples()]
    inputs = processor(images, return_tensors="pt")
    sizes = [im.shape[:2] for im in images]
    maps = {}
    for name in ("fp32", "bf16", "fp16"):
        with torch.inference_mode(), autocast(DTYPES[name]):
            outputs = model(inputs["pixel_values"].to(DEVICE), pixel_mask=inputs["pixel_mask"].to(DEVICE))
        results = processor.post_process_panoptic_segmentation(outputs, target_sizes=sizes)
        maps[name] = [(r["segmentation"].cpu(), {s["id"]: s["label_id"] for s in r["segments_info"]}) for r in results]
    for name in ("bf16", "fp16"):
        agree = total = 0
        for (ref_map, ref_labels), (map_, labels) in zip(maps["fp32"], maps[name]):
            # the class painted at each pixel (segment ids may be numbered differently), -1 where none
            agree += (class_map(ref_map, ref_labels) == class_map(map_, labels)).sum().item()
            total += ref_map.numel()
        print(f"{name}: panoptic class maps agree with fp32 on {100 * agree / total:.3f}% of pixels "
              f"({len(images)} images)", flush=True)


# ---------------------------------------------------------------------------------------------------- training


def random_targets(batch: int, height: int, width: int, num_labels: int, per_image: int = 6, seed: int = 0):
    """Per image ``per_image`` rectangles as bool masks (N, H, W) and their labels (N,), on the GPU."""
    rng = np.random.default_rng(seed)
    masks, labels = [], []
    for _ in range(batch):
        image_masks = np.zeros((per_image, height, width), dtype=bool)
        for i in range(per_image):
            y0, x0 = rng.integers(0, height // 2), rng.integers(0, width // 2)
            image_masks[i, y0: y0 + rng.integers(16, height // 2), x0: x0 + rng.integers(16, width // 2)] = True
        masks.append(torch.from_numpy(image_masks).to(DEVICE))
        labels.append(torch.from_numpy(rng.integers(0, num_labels, per_image)).to(DEVICE))
    return masks, labels


def training_section(args: argparse.Namespace) -> None:
    print(f"\n## training step: swin-tiny, {args.train_batch}x{args.train_size}x{args.train_size}, bf16 autocast, "
          "AdamW (forward + loss + backward + step)")
    ours, ref = same_weights_pair("swin-tiny")
    ours.to(DEVICE).train()
    ref.to(DEVICE).train()
    pixel_values = torch.randn(args.train_batch, 3, args.train_size, args.train_size,
                               generator=torch.Generator().manual_seed(0)).to(DEVICE)
    masks, labels = random_targets(args.train_batch, args.train_size, args.train_size, ours.config.num_labels)
    float_masks = [m.float() for m in masks]  # transformers samples the targets with grid_sample: no bool masks
    models = {"ours": ours, "ours, grid_sample": ours, "transformers": ref}
    optimizer_ours = torch.optim.AdamW(ours.parameters(), lr=1e-5)
    optimizers = {"ours": optimizer_ours, "ours, grid_sample": optimizer_ours,
                  "transformers": torch.optim.AdamW(ref.parameters(), lr=1e-5)}

    def step(name: str) -> Callable[[], float]:
        model, optimizer = models[name], optimizers[name]
        reference_kernel = name == "ours, grid_sample"
        targets = float_masks if name == "transformers" else masks

        def call():
            for module in model.modules():
                if hasattr(module, "use_reference_kernel"):
                    module.use_reference_kernel = reference_kernel
            torch.manual_seed(0)
            with autocast(torch.bfloat16):
                loss = model(pixel_values, mask_labels=targets, class_labels=labels).loss
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            return loss.item()
        return call

    steps = {name: step(name) for name in models}
    times = interleaved_times(steps, repeat=args.repeat, warmup=2)
    print(f"{'':18} {'step ms':>8} {'peak GiB':>9}")
    for name in models:
        print(f"{name:18} {1000 * statistics.median(times[name]):8.1f} {peak_memory_gib(steps[name]):9.2f}", flush=True)
    print(f"ratio ours / transformers step time {statistics.median(times['ours']) / statistics.median(times['transformers']):.2f}")


# ----------------------------------------------------------------------------------------------------- profile


def profile_section(args: argparse.Namespace) -> None:
    """Where the time goes: one bf16 training step of Swin-T and one bf16 batch-1 forward of Swin-L per library, under
    torch.profiler; the operators with the most GPU time, and host time against GPU busy time."""
    from torch.profiler import ProfilerActivity, profile

    def report(title: str, fn: Callable[[], Any]) -> None:
        for _ in range(2):
            fn()
        synchronize()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            fn()
            synchronize()
        wall = time.perf_counter() - start
        events = prof.key_averages()
        gpu_total = sum(e.self_device_time_total for e in events) / 1e3
        print(f"\n### {title}: wall {1000 * wall:.1f} ms under the profiler, GPU busy {gpu_total:.1f} ms, "
              f"{sum(e.count for e in events if e.key.startswith('cuda') and 'Launch' in e.key)} kernel launches")
        print(events.table(sort_by="self_device_time_total", row_limit=args.profile_rows, max_name_column_width=60))

    ours, ref = same_weights_pair("swin-tiny")
    ours.to(DEVICE).train()
    ref.to(DEVICE).train()
    pixel_values = torch.randn(args.train_batch, 3, args.train_size, args.train_size).to(DEVICE)
    masks, labels = random_targets(args.train_batch, args.train_size, args.train_size, ours.config.num_labels)
    for name, model, targets in (("ours", ours, masks), ("transformers", ref, [m.float() for m in masks])):
        def step(model=model, targets=targets):
            with autocast(torch.bfloat16):
                loss = model(pixel_values, mask_labels=targets, class_labels=labels).loss
            loss.backward()
            model.zero_grad(set_to_none=True)
        report(f"training step, {name}", step)
    del ours, ref
    ours, ref = same_weights_pair("swin-large")
    ours.to(DEVICE).eval()
    ref.to(DEVICE).eval()
    single = torch.randn(1, 3, args.height, args.width).to(DEVICE)
    for name, model in (("ours", ours), ("transformers", ref)):
        def forward(model=model):
            with torch.inference_mode(), autocast(torch.bfloat16):
                return model(single)
        report(f"swin-large forward, batch 1, bf16, {name}", forward)
    del ours, ref


# -------------------------------------------------------------------------------------------------------- onnx


def onnx_section(args: argparse.Namespace) -> None:
    """Swin-T exported by ``mask2former export`` (fp32 and fp16), run by onnxruntime's CUDA provider, against our
    PyTorch forward on the same weights (fp32; fp16 autocast for the fp16 file), batch 1 at --height x --width. The
    onnxruntime times include copying the input in and the logits out (what ``OnnxRuntimeModel`` hands back)."""
    try:
        import onnxruntime

        from mask2former.export import OnnxRuntimeModel, export_directory
    except ImportError as error:
        print(f"\n## onnx: skipped ({error})")
        return
    provider = "CUDAExecutionProvider" if DEVICE.type == "cuda" else "CPUExecutionProvider"
    if provider not in onnxruntime.get_available_providers():
        print(f"\n## onnx: skipped (onnxruntime {onnxruntime.__version__} has no {provider}: "
              f"{onnxruntime.get_available_providers()}; pip install onnxruntime-gpu)")
        return
    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    from common import config_kwargs

    print(f"\n## onnx: onnxruntime {onnxruntime.__version__} {provider} vs ours, swin-tiny, batch 1, "
          f"{args.height}x{args.width}")
    print(f"{'dtype':5} {'export s':>8} {'MB':>6} {'ort img/s':>9} {'ours img/s':>10} {'ort/ours':>8}  max |d| vs ours "
          "(masks, classes)")
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs("swin-tiny"))).eval()
    pixel_values = torch.randn(1, 3, args.height, args.width, generator=torch.Generator().manual_seed(0))
    for name in ("fp32", "fp16"):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            directory, _, _ = export_directory(model, Path(tmp) / "onnx", dtype=name, check=False)
            export_s = time.perf_counter() - start
            size_mb = (directory / "model.onnx").stat().st_size / 1e6
            runtime = OnnxRuntimeModel.from_pretrained(directory, providers=[provider, "CPUExecutionProvider"])
            model.to(DEVICE)
            device_input = pixel_values.to(DEVICE)

            def ours(dtype=DTYPES[name]):
                with torch.inference_mode(), autocast(dtype):
                    return model(device_input)

            got, expected = runtime(pixel_values), ours()
            times = interleaved_times({"ort": lambda: runtime(pixel_values), "ours": ours}, repeat=args.repeat)
            ort_s, ours_s = statistics.median(times["ort"]), statistics.median(times["ours"])
            print(f"{name:5} {export_s:8.0f} {size_mb:6.0f} {1 / ort_s:9.2f} {1 / ours_s:10.2f} {ours_s / ort_s:8.2f}  "
                  f"{max_diff(got.masks_queries_logits, expected.masks_queries_logits.float().cpu()):.1e}, "
                  f"{max_diff(got.class_queries_logits, expected.class_queries_logits.float().cpu()):.1e}",
                  flush=True)
            model.to("cpu")
            del runtime


# ---------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS[:-1]))
    parser.add_argument("--profile-rows", type=int, default=15)
    parser.add_argument("--models", nargs="+", default=["swin-tiny", "swin-large"])
    parser.add_argument("--e2e-models", nargs="+", default=["swin-large", "swin-tiny"])
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=list(DTYPES))
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--height", type=int, default=800)
    parser.add_argument("--width", type=int, default=1088)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=384)
    parser.add_argument("--train-batch", type=int, default=2)
    parser.add_argument("--no-cuda-graphs", dest="cuda_graphs", action="store_false")
    parser.add_argument("--budget", type=float, default=420.0, help="seconds; no section starts after that")
    parser.add_argument("--device", default="cuda", help="cpu runs the script itself on tiny sizes' worth (a dry run)")
    args = parser.parse_args()
    global DEVICE
    DEVICE = torch.device(args.device)
    if DEVICE.type == "cuda" and not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA device (torch.cuda.is_available() is False)")
    import transformers

    import mask2former

    device_name = torch.cuda.get_device_name() if DEVICE.type == "cuda" else "CPU (dry run)"
    print(f"{device_name}; torch {torch.__version__} (CUDA {torch.version.cuda}); transformers "
          f"{transformers.__version__}; mask2former {getattr(mask2former, '__version__', '?')}; "
          f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32}")
    start = time.perf_counter()
    runners = {"forward": forward_section, "end-to-end": end_to_end_section, "half": half_section,
               "training": training_section, "onnx": onnx_section, "profile": profile_section}
    for name in args.only:
        elapsed = time.perf_counter() - start
        if elapsed > args.budget:
            print(f"\n## {name}: skipped (budget of {args.budget:.0f} s spent)")
            continue
        section_start = time.perf_counter()
        try:
            runners[name](args)
        except Exception:  # noqa: BLE001 - one failed section must not hide the others
            print(f"\n## {name}: FAILED\n{traceback.format_exc()}", flush=True)
        print(f"({name}: {time.perf_counter() - section_start:.0f} s)", flush=True)
        empty_cache()


if __name__ == "__main__":
    main()
