"""Export: torch.export on the default outputs, ONNX through onnxruntime against PyTorch, the exported directory as a
predict backend, and an export that fails leaving nothing behind.

One tiny model is exported once per module (the trace takes tens of seconds, whatever the model's size); the
Swin-T-shaped parity check is benchmarks/bench_onnx.py (numbers in docs/export.md).
"""

from __future__ import annotations

import json

import pytest
import torch

from helpers import tiny_config_kwargs

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

pytest.importorskip("onnxruntime", reason="the onnx extra (pip install 'mask2former[onnx]') is not installed")
pytest.importorskip("onnxscript", reason="torch.onnx.export needs onnxscript (the onnx extra)")

SIZES = [(61, 93), (97, 131), (150, 201)]  # none a multiple of 32, none the traced size


def _model(seed: int = 0) -> Mask2FormerForUniversalSegmentation:
    torch.manual_seed(seed)
    return Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs(
        backbone={"depths": [1, 1, 1, 1]}, encoder_layers=1, decoder_layers=3))).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(model, checkpoint directory, exported directory, check) of one tiny model."""
    from mask2former import Mask2FormerImageProcessor
    from mask2former.export import export_directory

    model = _model()
    root = tmp_path_factory.mktemp("export")
    checkpoint = root / "checkpoint"
    model.save_pretrained(checkpoint)
    Mask2FormerImageProcessor(size={"shortest_edge": 96, "longest_edge": 160}).save_pretrained(checkpoint)
    directory, check, _ = export_directory(checkpoint, root / "onnx")
    return model, checkpoint, directory, check


def test_export_directory_holds_the_model_the_configs_and_standard_operators(exported):
    import onnx

    model, checkpoint, directory, check = exported
    assert sorted(p.name for p in directory.iterdir()) == ["config.json", "model.onnx", "preprocessor_config.json"]
    assert json.loads((directory / "config.json").read_text())["num_queries"] == model.config.num_queries
    assert (directory / "preprocessor_config.json").read_text() == (checkpoint / "preprocessor_config.json").read_text()
    graph = onnx.load(str(directory / "model.onnx"))
    assert [i.name for i in graph.graph.input] == ["pixel_values"]
    assert [o.name for o in graph.graph.output] == ["class_queries_logits", "masks_queries_logits"]
    assert all(op.domain in ("", "ai.onnx") for op in graph.opset_import if op.domain != "pkg.onnxscript.torch_lib")
    assert {node.domain for node in graph.graph.node} <= {"", "ai.onnx"}  # standard operators only
    assert "GridSample" in check.operators
    assert check.class_max_diff < 1e-4 and check.mask_share_within_1e4 >= 0.999


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_onnxruntime_matches_pytorch_on_other_batches_and_sizes(exported, batch):
    from mask2former.export import OnnxRuntimeModel

    model, _, directory, _ = exported
    runtime = OnnxRuntimeModel.from_pretrained(directory)
    generator = torch.Generator().manual_seed(batch)
    for height, width in SIZES:
        pixel_values = torch.randn(batch, 3, height, width, generator=generator)
        with torch.inference_mode():
            expected = model(pixel_values)  # the fast paths: ONNX Runtime is held against what users run
        got = runtime(pixel_values)
        assert got.masks_queries_logits.shape == (batch, model.config.num_queries, (height + 3) // 4, (width + 3) // 4)
        torch.testing.assert_close(got.class_queries_logits, expected.class_queries_logits, rtol=0, atol=1e-4)
        close = (got.masks_queries_logits - expected.masks_queries_logits).abs() <= 1e-4
        assert close.float().mean() >= 0.999, (batch, height, width, close.float().mean())


def test_predict_through_the_exported_directory_gives_the_checkpoints_segments(exported, tmp_path):
    from PIL import Image

    from mask2former.predict import Predictor

    _, checkpoint, directory, _ = exported
    rng = torch.Generator().manual_seed(0)
    images = [Image.fromarray(torch.randint(0, 256, (h, w, 3), generator=rng, dtype=torch.uint8).numpy())
              for h, w in ((90, 130), (120, 77))]
    for task in ("panoptic", "instance", "semantic"):
        through_torch = Predictor.from_pretrained(checkpoint, task, device="cpu", threshold=0.0)(images)
        onnx_predictor = Predictor.from_pretrained(directory, task, device="cpu", threshold=0.0)
        assert not isinstance(onnx_predictor.model, torch.nn.Module)
        through_onnx = onnx_predictor(images)
        for a, b in zip(through_torch, through_onnx, strict=True):
            assert a.segments, task  # threshold 0: a random model still finds segments
            assert (a.segmentation == b.segmentation).all(), task
            assert [(s["label_id"], s["area"]) for s in a.segments] == [(s["label_id"], s["area"]) for s in b.segments]


def test_cli_predict_runs_the_exported_directory(exported, tmp_path):
    from mask2former.cli import main

    _, _, directory, _ = exported
    from PIL import Image

    Image.new("RGB", (70, 50), (200, 30, 30)).save(tmp_path / "red.png")
    assert main(["predict", str(tmp_path / "red.png"), "--model", str(directory), "--output-dir",
                 str(tmp_path / "out"), "--device", "cpu", "--no-progress"]) == 0
    assert (tmp_path / "out" / "red.json").is_file()


def test_a_failed_export_leaves_no_directory(tmp_path, monkeypatch, capsys):
    import mask2former.export.onnx as onnx_export
    from mask2former.cli import main

    checkpoint = tmp_path / "checkpoint"
    _model().save_pretrained(checkpoint)

    def fail(*args, **kwargs):
        (args[1]).write_bytes(b"half")  # something was already written when it failed
        raise RuntimeError("the tracer gave up")

    monkeypatch.setattr(onnx_export, "export_onnx", fail)
    assert main(["export", "--model", str(checkpoint), "--output-dir", str(tmp_path / "out")]) == 2
    assert "the tracer gave up" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]  # no out, no staging directory


def test_export_refuses_a_directory_that_is_not_empty(tmp_path, capsys):
    from mask2former.cli import main

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep me")
    assert main(["export", "--model", str(tmp_path / "missing"), "--output-dir", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "mine.txt").read_text() == "keep me"


def test_onnxruntime_missing_names_the_extra(monkeypatch, tmp_path):
    import sys

    from mask2former.export import OnnxRuntimeModel
    from mask2former.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(MissingExtraError, match=r"mask2former\[onnx\]"):
        OnnxRuntimeModel.from_file(tmp_path / "model.onnx")
