"""Bad inputs through the real commands: for each, the exit status, one ``error:`` line that names the culprit, no
traceback, and nothing the user gave modified.

Each case builds its inputs under ``tmp/in`` (and sometimes earlier outputs under ``tmp/out``) and returns the argv
of ``mask2former``; every file that existed before the command must be byte-identical after it.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from test_predict import tiny_model_dir, write_images

from mask2former.cli import main
from mask2former.data.synthetic import generate_synthetic_dataset

TINY_MODEL = dict(
    backbone_config=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=7,
                         out_features=["stage1", "stage2", "stage3", "stage4"]),
    feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
    num_attention_heads=4, encoder_layers=1, decoder_layers=2, num_queries=6, train_num_points=64,
)


@dataclass
class Fixtures:
    model: Path  # a tiny model directory (never modified: cases that break one copy it first)
    shapes: object  # a small synthetic COCO panoptic / instance / semantic dataset


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> Fixtures:
    shapes = generate_synthetic_dataset(tmp_path_factory.mktemp("shapes"), num_images=3, seed=5, min_size=64,
                                        max_size=72)
    return Fixtures(tiny_model_dir(tmp_path_factory.mktemp("tiny")), shapes)


# ---------------------------------------------------------------------------------------------------- helpers


def _images(tmp: Path, count: int = 1) -> str:
    write_images(tmp / "in" / "photos", count)
    return str(tmp / "in" / "photos")


def _predict(tmp: Path, fx: Fixtures, *extra: str, model: str | None = None) -> list[str]:
    return ["predict", _images(tmp), "--model", model or str(fx.model), "--output-dir", str(tmp / "out"),
            "--no-progress", *extra]


def _broken_model(tmp: Path, fx: Fixtures, edit: Callable[[dict], None] | None = None,
                  weights: bytes | None = None) -> str:
    folder = tmp / "in" / "model"
    shutil.copytree(fx.model, folder)
    if edit is not None:
        config = json.loads((folder / "config.json").read_text())
        edit(config)
        (folder / "config.json").write_text(json.dumps(config))
    if weights is not None:
        (folder / "model.safetensors").write_bytes(weights)
    return str(folder)


def _model_with_config_text(tmp: Path, fx: Fixtures, text: str) -> str:
    folder = _broken_model(tmp, fx)
    (Path(folder) / "config.json").write_text(text)
    return folder


def _run_file(tmp: Path, fx: Fixtures, **changes) -> str:
    run = {"train_data": {"format": "coco_panoptic", "images": str(fx.shapes.image_dir),
                          "annotations": str(fx.shapes.panoptic_json), "masks": str(fx.shapes.panoptic_dir)},
           "model": TINY_MODEL, "crop_size": 64, "batch_size": 1, "max_steps": 1, "progress": False,
           "output_dir": str(tmp / "out" / "run")}
    run.update(changes)
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / "run.yaml").write_text(yaml.safe_dump(run))
    return str(tmp / "in" / "run.yaml")


def _dataset_copy(tmp: Path, fx: Fixtures) -> Path:
    root = tmp / "in" / "data"
    shutil.copytree(fx.shapes.root, root)
    return root


def _train_on(tmp: Path, fx: Fixtures, root: Path) -> list[str]:
    spec = {"format": "coco_panoptic", "images": str(root / "images"), "annotations": str(root / "panoptic.json"),
            "masks": str(root / "panoptic")}
    return ["train", "--config", _run_file(tmp, fx, train_data=spec)]


def _missing_image(tmp: Path, fx: Fixtures) -> list[str]:
    root = _dataset_copy(tmp, fx)
    first = sorted((root / "images").iterdir())[0]
    first.unlink()
    return _train_on(tmp, fx, root)


def _unknown_category(tmp: Path, fx: Fixtures) -> list[str]:
    root = _dataset_copy(tmp, fx)
    data = json.loads((root / "panoptic.json").read_text())
    data["annotations"][0]["segments_info"][0]["category_id"] = 999
    data["annotations"][1]["segments_info"][0]["category_id"] = 998
    (root / "panoptic.json").write_text(json.dumps(data))
    return _train_on(tmp, fx, root)


def _existing_run(tmp: Path, fx: Fixtures) -> list[str]:
    run = tmp / "out" / "run" / "checkpoints"
    (run / "step_00000001").mkdir(parents=True)
    (run / "step_00000001" / "training_state.pt").write_bytes(b"state")
    (run / "latest").write_text("step_00000001\n")
    return ["train", "--config", _run_file(tmp, fx)]


def _no_pycocotools(tmp: Path, fx: Fixtures, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    for name in [m for m in sys.modules if m.startswith("pycocotools")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pycocotools", None)  # import pycocotools -> ImportError
    spec = {"format": "coco_instance", "images": str(fx.shapes.image_dir), "annotations": str(fx.shapes.instances_json)}
    return ["train", "--config", _run_file(tmp, fx, train_data=spec)]


def _panoptic_eval(tmp: Path, fx: Fixtures, predictions: str, prediction_dir: str) -> list[str]:
    return ["evaluate", "--task", "panoptic", "--annotations", str(fx.shapes.panoptic_json), "--masks",
            str(fx.shapes.panoptic_dir), "--predictions", predictions, "--prediction-dir", prediction_dir]


def _corrupt_prediction_png(tmp: Path, fx: Fixtures) -> list[str]:
    shutil.copytree(fx.shapes.panoptic_dir, tmp / "in" / "pred")
    first = sorted((tmp / "in" / "pred").iterdir())[0]
    first.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    gt = json.loads(fx.shapes.panoptic_json.read_text())
    (tmp / "in" / "pred.json").write_text(json.dumps({"annotations": gt["annotations"]}))
    return _panoptic_eval(tmp, fx, str(tmp / "in" / "pred.json"), str(tmp / "in" / "pred"))


def _text_file(tmp: Path, name: str, text: str) -> str:
    (tmp / "in").mkdir(exist_ok=True)
    (tmp / "in" / name).write_text(text)
    return str(tmp / "in" / name)


# ------------------------------------------------------------------------------------------------------ cases


@dataclass
class Case:
    name: str
    build: Callable[..., list[str]]  # (tmp, fx[, monkeypatch]) -> argv
    code: int
    needles: tuple[str, ...]  # each must appear in stderr


CASES = [
    # predict: inputs
    Case("missing image", lambda t, f: ["predict", str(t / "in" / "nope.jpg"), "--model", str(f.model)], 2,
         ("nope.jpg: no such file or folder",)),
    Case("empty folder", lambda t, f: ((t / "in" / "empty").mkdir(parents=True), ["predict", str(t / "in" / "empty"),
                                                                                  "--model", str(f.model)])[1],
         2, ("empty: the folder holds no images",)),
    Case("pattern matches nothing", lambda t, f: ["predict", str(t / "in" / "*.jpg"), "--model", str(f.model)], 2,
         ("*.jpg: the pattern matches no image files",)),
    Case("corrupt image among good ones", lambda t, f: (write_images(t / "in", 1), (t / "in" / "bad.jpg").write_bytes(
        b"\xff\xd8\xff\xe0 cut"), ["predict", str(t / "in"), "--model", str(f.model), "--output-dir",
                                   str(t / "out"), "--no-progress"])[2], 1, ("bad.jpg", "could not be read")),
    # predict: options
    Case("--alpha above 1", lambda t, f: _predict(t, f, "--alpha", "1.5"), 2, ("--alpha", "between 0 and 1", "1.5")),
    Case("--size 0", lambda t, f: _predict(t, f, "--size", "0"), 2, ("--size", "at least 1")),
    Case("--batch-size -1", lambda t, f: _predict(t, f, "--batch-size", "-1"), 2, ("--batch-size", "at least 1")),
    Case("--threshold not a number", lambda t, f: _predict(t, f, "--threshold", "high"), 2,
         ("--threshold", "must be a number", "high")),
    Case("--task unknown", lambda t, f: _predict(t, f, "--task", "depth"), 2, ("--task", "invalid choice", "depth")),
    Case("unknown command", lambda t, f: ["segment"], 2, ("invalid choice", "segment")),
    Case("--coco-categories missing", lambda t, f: _predict(t, f, "--coco-categories", str(t / "in" / "gt.json")), 2,
         ("gt.json: no such file",)),
    Case("--coco-categories not COCO", lambda t, f: _predict(t, f, "--coco-categories",
                                                             _text_file(t, "gt.json", "[1, 2]")),
         2, ("gt.json: not a COCO JSON",)),
    # predict: outputs
    Case("outputs exist", lambda t, f: (write_images(t / "out", 1), _predict(t, f))[1], 2,
         ("img0.png", "already exist", "--overwrite")),
    Case("output folder is a file", lambda t, f: _predict(t, f, "--output-dir", _text_file(t, "x.txt", "keep")), 2,
         ("x.txt is a file, not a folder",)),
    Case("output folder not writable", lambda t, f: _predict(t, f, "--output-dir", "/sys/m2f_out"), 2,
         ("/sys/m2f_out: cannot write in /sys", "choose another --output-dir")),
    # predict: models
    Case("model path missing", lambda t, f: _predict(t, f, model=str(t / "in" / "mine")), 2,
         ("in/mine: no such folder",)),
    Case("model path like a hub id", lambda t, f: ((t / "in").mkdir(exist_ok=True),
                                                   _predict(t, f, model="in/mine"))[1], 2,
         ("in/mine: no such folder", "in/ exists")),
    Case("model folder without weights", lambda t, f: ((t / "in" / "m").mkdir(parents=True),
                                                       _predict(t, f, model=str(t / "in" / "m")))[1], 2,
         ("config.json",)),
    Case("corrupt model.safetensors", lambda t, f: _predict(t, f, model=_broken_model(t, f, weights=b"junk" * 10)), 2,
         ("model.safetensors",)),
    Case("config num_queries as text", lambda t, f: _predict(t, f, model=_broken_model(
        t, f, lambda c: c.update(num_queries="sixteen"))), 2, ("num_queries must be a whole number", "sixteen")),
    Case("config id2label as a list", lambda t, f: _predict(t, f, model=_broken_model(
        t, f, lambda c: c.update(id2label=["a", "b", "c"]))), 2, ("id2label must map class ids to names",)),
    Case("config depths as text", lambda t, f: _predict(t, f, model=_broken_model(
        t, f, lambda c: c["backbone_config"].update(depths="1,1,2,1"))), 2,
         ("depths must be a list of whole numbers", "1,1,2,1")),
    Case("config.json not JSON", lambda t, f: _predict(t, f, model=_model_with_config_text(t, f, "{oops")), 2,
         ("config.json is not valid JSON",)),
    Case("offline hub id", lambda t, f: _predict(t, f, model="facebook/no-such-model-m2f"), 2,
         ("facebook/no-such-model-m2f", "not in the local hub cache", "--local-dir")),
    # train
    Case("train --config missing", lambda t, f: ["train", "--config", str(t / "in" / "nope.yaml")], 2,
         ("nope.yaml: no such run file",)),
    Case("train run file not YAML", lambda t, f: ["train", "--config", _text_file(t, "run.yaml", "lr: [1, 2\n")], 2,
         ("run.yaml is not valid YAML",)),
    Case("train run file a list", lambda t, f: ["train", "--config", _text_file(t, "run.yaml", "- 1\n- 2\n")], 2,
         ("run.yaml must hold a mapping of settings",)),
    Case("train --set unknown key", lambda t, f: ["train", "--config", _run_file(t, f), "--set", "foo=1"], 2,
         ("unknown training settings ['foo']",)),
    Case("train --set without =", lambda t, f: ["train", "--config", _run_file(t, f), "--set", "lr"], 2,
         ("override 'lr' must look like key=value",)),
    Case("train lr as text", lambda t, f: ["train", "--config", _run_file(t, f), "--set", "lr=fast"], 2,
         ("lr must be a number", "fast")),
    Case("train unknown train_data key", lambda t, f: ["train", "--config", _run_file(t, f), "--set",
                                                       "train_data.image_dir=x"], 2,
         ("unknown train_data settings ['image_dir']",)),
    Case("train without data", lambda t, f: ["train", "--set", f"output_dir={t / 'out' / 'run'}"], 2,
         ("train_data is not set", "docs/finetuning.md")),
    Case("train into an existing run", _existing_run, 2, ("already holds a training run", "--resume")),
    Case("train --resume without a run", lambda t, f: ["train", "--config", _run_file(t, f), "--resume"], 2,
         ("--resume", "holds no training run to resume", "the folder does not exist")),
    Case("train image missing", _missing_image, 2, ("1 file(s) named by the annotations do not exist",
                                                     "no training step was run")),
    Case("train unknown categories", _unknown_category, 2, ("2 problem(s)", "unknown category id 999",
                                                            "unknown category id 998")),
    Case("train coco_instance without pycocotools", _no_pycocotools, 2, ("pip install 'mask2former[coco]'",)),
    Case("train --max-steps 0", lambda t, f: ["train", "--max-steps", "0"], 2, ("--max-steps", "at least 1")),
    # evaluate
    Case("evaluate --task panoptic alone", lambda t, f: ["evaluate", "--task", "panoptic"], 2,
         ("needs --annotations, --masks, --predictions, --prediction-dir",)),
    Case("evaluate corrupt prediction PNG", _corrupt_prediction_png, 2, ("cannot read it as a panoptic PNG",)),
    Case("evaluate predictions JSON malformed", lambda t, f: _panoptic_eval(
        t, f, _text_file(t, "pred.json", "{\"annotations\": [1, 2"), str(f.shapes.panoptic_dir)), 2,
         ("pred.json is not valid JSON",)),
    Case("evaluate predictions JSON of the wrong shape", lambda t, f: _panoptic_eval(
        t, f, _text_file(t, "pred.json", "{\"results\": []}"), str(f.shapes.panoptic_dir)), 2,
         ("pred.json: not a COCO panoptic JSON",)),
    Case("evaluate instance results malformed", lambda t, f: [
        "evaluate", "--task", "instance", "--annotations", str(f.shapes.instances_json), "--predictions",
        _text_file(t, "res.json", "[{\"image_id\": 1}]")], 2, ("res.json: not COCO results",)),
    Case("evaluate --model without data", lambda t, f: ["evaluate", "--task", "panoptic", "--model", str(f.model)], 2,
         ("needs --data-format and --images",)),
    # demo and convert
    Case("demo over an earlier demo", lambda t, f: (write_images(t / "out", 1, size=(8, 8)), (t / "out" / "img0.png")
                                                    .rename(t / "out" / "shapes_1.png"),
                                                    ["demo", "--output-dir", str(t / "out"), "--device", "cpu"])[2],
         2, ("shapes_1.png", "--overwrite")),
    Case("convert missing checkpoint", lambda t, f: ["convert", str(t / "in" / "model_final.pkl"), "--output-dir",
                                                     str(t / "out")], 2, ("model_final.pkl",)),
]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_gives_one_clear_error(case, fx, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative paths (a model named like a hub id) are looked up here
    if case.name == "offline hub id":
        pytest.importorskip("huggingface_hub")
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    if case.name == "output folder not writable" and not Path("/sys").is_dir():
        pytest.skip("needs a read-only /sys")
    if case.name == "train coco_instance without pycocotools":
        argv = case.build(tmp_path, fx, monkeypatch)
    else:
        argv = case.build(tmp_path, fx)
    before = _snapshot(tmp_path)
    fixtures_before = _snapshot(fx.model)
    code = _run(argv)
    out, err = capsys.readouterr()
    print(f"{case.name}: exit {code}\n{err}")
    assert code == case.code
    for needle in case.needles:
        assert needle in err, f"{needle!r} not in stderr:\n{err}"
    assert "Traceback" not in out + err
    assert "this is unexpected" not in err  # every case here is one we expect, with its own message
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == (1 if case.code == 2 else 0), err
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before, "an input or earlier output was modified"
    assert _snapshot(fx.model) == fixtures_before


def _run(argv: list[str]) -> int:
    """``mask2former ARGV`` in this process: its exit status (argparse's errors exit through ``SystemExit``)."""
    try:
        return main(argv)
    except SystemExit as exited:
        return int(exited.code or 0)


def test_debug_shows_the_traceback(fx, tmp_path, capsys):
    argv = _predict(tmp_path, fx, model=_broken_model(tmp_path, fx, lambda c: c.update(num_queries="sixteen")))
    assert main(["--debug", *argv]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")
    assert main([*argv, "--debug"]) == 2 and "Traceback" in capsys.readouterr().err


def test_unexpected_errors_say_so_and_point_to_debug(fx, tmp_path, capsys, monkeypatch):
    from mask2former import predict

    def broken(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(predict.Predictor, "from_pretrained", broken)
    assert main(_predict(tmp_path, fx)) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ZeroDivisionError: division by zero") and "--debug" in err
    assert "Traceback" not in err


def test_help_shows_defaults_and_version(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "(default: 0.6)" in out and "(default: panoptic)" in out
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("mask2former ")


def test_at_least_thirty_cases():
    assert len(CASES) >= 30

