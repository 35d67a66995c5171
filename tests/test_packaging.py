"""The package as a user gets it from ``pip install``: the sdist and the wheel built from it (what the wheel carries
and what it must not), the wheel installed into a fresh virtual environment and used from outside the source tree
(``mask2former --version``, ``mask2former demo``, three lines of Python on the bundled model), the one version and
the changelog.

The fresh environment gets the wheel with ``--no-deps --no-index`` (no network) and reuses the dependencies already
installed here (torch, numpy, ...) through a ``.pth`` file listing the directories they are installed in; those
directories come after the environment's own site-packages, so ``import mask2former`` finds the installed wheel.
"""

from __future__ import annotations

import email.parser
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from mask2former.cli import main
from mask2former.extras import EXTRAS, MissingExtraError, require
from mask2former.version import VERSION_KEY, __version__, version_record

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src" / "mask2former"
# what a source checkout holds that the sdist is built from (MANIFEST.in and pyproject.toml choose from these)
CHECKOUT = ["pyproject.toml", "MANIFEST.in", "README.md", "LICENSE", "CHANGELOG.md", "src", "tests", "docs",
            "benchmarks", "recipes"]
# the three-line use of the bundled model, as a user would write it; the last line reports for the test
USE_THE_DEMO_MODEL = """\
from mask2former.predict import Predictor, bundled_examples
from PIL import Image
predictions = Predictor.from_pretrained()([Image.open(path) for path in bundled_examples()])
import json, mask2former; print(json.dumps({"file": mask2former.__file__, "version": mask2former.__version__,
    "labels": [sorted({segment["label"] for segment in p.segments}) for p in predictions]}))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, f"{command} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
    return result


def _build(hook: str, source: Path, out: Path) -> Path:
    """Run setuptools' PEP 517 ``build_sdist`` / ``build_wheel`` hook in ``source`` (no isolated build environment:
    the setuptools installed here, so no network)."""
    out.mkdir(parents=True, exist_ok=True)
    _run([sys.executable, "-c", f"import sys, setuptools.build_meta as b; b.{hook}(sys.argv[1])", str(out)],
         cwd=source)
    (built,) = [path for path in out.iterdir() if path.suffix in (".gz", ".whl")]
    return built


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    """The sdist of a copy of this checkout, and the wheel built from that sdist (as ``python -m build`` does)."""
    work = tmp_path_factory.mktemp("packaging")
    checkout = work / "checkout"
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info", ".pytest_cache")
    for name in CHECKOUT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, checkout / name, ignore=ignore)
        else:
            checkout.mkdir(exist_ok=True)
            shutil.copy2(source, checkout / name)
    sdist = _build("build_sdist", checkout, work / "sdist")
    with tarfile.open(sdist) as archive:
        if hasattr(tarfile, "data_filter"):
            archive.extractall(work / "unpacked", filter="data")
        else:  # Python < 3.10.12
            archive.extractall(work / "unpacked")
    (unpacked,) = (work / "unpacked").iterdir()
    wheel = _build("build_wheel", unpacked, work / "wheel")
    return {"sdist": sdist, "wheel": wheel}


def _source_files(folder: Path, pattern: str) -> set[str]:
    return {path.relative_to(SOURCE.parent).as_posix() for path in folder.rglob(pattern)
            if "__pycache__" not in path.parts}


def test_wheel_carries_the_package_the_assets_and_the_licence_and_nothing_else(built):
    wheel = built["wheel"]
    assert wheel.name == f"mask2former-{__version__}-py3-none-any.whl"
    info = f"mask2former-{__version__}.dist-info/"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        licence = archive.read(info + "licenses/LICENSE")
        metadata = email.parser.Parser().parsestr(archive.read(info + "METADATA").decode())
        entry_points = archive.read(info + "entry_points.txt").decode()
    assert all(name.startswith(("mask2former/", info)) for name in names), sorted(names)
    assert not [name for name in names if re.search(r"(^|/)(tests?|benchmarks?|recipes)/|/(test_|bench_)[^/]*\.py$"
                                                    r"|conftest\.py$|\.py[cod]$|__pycache__", name)]
    assert _source_files(SOURCE, "*.py") <= names  # every module
    assert {"mask2former/py.typed", "mask2former/assets/demo_model/config.json",
            "mask2former/assets/demo_model/model.safetensors",
            "mask2former/assets/demo_model/preprocessor_config.json"} <= names
    examples = _source_files(SOURCE / "assets" / "examples", "*.jpg")
    assert len(examples) == 4 and examples <= names
    assert licence == (ROOT / "LICENSE").read_bytes()
    assert metadata["Version"] == __version__ and metadata["License-Expression"] == "Apache-2.0"
    assert set(metadata.get_all("Provides-Extra")) == set(EXTRAS) | {"test"}
    assert "mask2former = mask2former.cli:main" in entry_points
    print(f"wheel: {wheel.stat().st_size / 2**20:.2f} MiB, {len(names)} files")


def test_licence_is_the_full_apache_2_text():
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    for section in ("1. Definitions.", "4. Redistribution.", "9. Accepting Warranty or Additional Liability.",
                    "END OF TERMS AND CONDITIONS"):
        assert section in text


def test_sdist_carries_the_licence_changelog_tests_and_docs(built):
    with tarfile.open(built["sdist"]) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    assert {"LICENSE", "README.md", "CHANGELOG.md", "pyproject.toml", "tests/test_packaging.py",
            "docs/predict.md", "recipes/train_demo_model.sh", "src/mask2former/version.py"} <= names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]


def _dependency_dirs() -> list[str]:
    """The directories the installed distributions of this interpreter live in, except the source tree (an
    editable install's metadata may sit in ``src``)."""
    dirs = {Path(str(dist.locate_file(""))).resolve() for dist in importlib.metadata.distributions()}
    return sorted(str(d) for d in dirs if d not in (ROOT, ROOT / "src", ROOT / "tests"))


def _fresh_environment(path: Path, wheel: Path) -> Path:
    """A virtual environment with only the wheel installed (no network); the dependencies installed here are reused
    through a ``.pth`` file that is written after the install, so pip sees no other mask2former."""
    pip_version = tuple(int(part) for part in re.findall(r"\d+", importlib.metadata.version("pip"))[:2])
    with_own_pip = pip_version < (22, 3)  # older pips have no --python
    _run([sys.executable, "-m", "venv", str(path)] + ([] if with_own_pip else ["--without-pip"]))
    python = path / "bin" / "python"
    pip = [str(python), "-m", "pip"] if with_own_pip else [sys.executable, "-m", "pip", "--python", str(python)]
    _run(pip + ["install", "--no-deps", "--no-index", "--disable-pip-version-check", str(wheel)])
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    (Path(purelib) / "reused_dependencies.pth").write_text("\n".join(_dependency_dirs()) + "\n")
    return python


def test_wheel_dependencies_are_installed_here(built):
    """The fresh environment reuses this one's packages: they must satisfy what the wheel declares."""
    with zipfile.ZipFile(built["wheel"]) as archive:
        metadata = email.parser.Parser().parsestr(
            archive.read(f"mask2former-{__version__}.dist-info/METADATA").decode())
    for line in metadata.get_all("Requires-Dist"):
        requirement = Requirement(line)
        if requirement.marker is None:
            installed = importlib.metadata.version(requirement.name)
            assert requirement.specifier.contains(installed, prereleases=True), (requirement, installed)


def test_installed_wheel_runs_the_demo_outside_the_source_tree(built, tmp_path):
    python = _fresh_environment(tmp_path / "venv", built["wheel"])
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.update(PATH=f"{python.parent}{os.pathsep}{env.get('PATH', '')}", PYTHONNOUSERSITE="1",
               VIRTUAL_ENV=str(python.parent.parent))
    command = str(python.parent / "mask2former")

    version = _run([command, "--version"], cwd=workdir, env=env).stdout
    assert version.strip() == f"mask2former {__version__}"

    demo = _run([command, "demo"], cwd=workdir, env=env)
    examples = sorted(path.stem for path in (SOURCE / "assets" / "examples").glob("*.jpg"))
    assert f"{len(examples)} of {len(examples)} images segmented" in demo.stdout, demo.stdout
    for stem in examples:
        assert (workdir / "outputs" / "demo" / f"{stem}.png").is_file()
        segments = json.loads((workdir / "outputs" / "demo" / f"{stem}.json").read_text())["segments"]
        assert segments, stem

    report = json.loads(_run([str(python), "-c", USE_THE_DEMO_MODEL], cwd=workdir, env=env).stdout.splitlines()[-1])
    assert Path(report["file"]).resolve().is_relative_to((tmp_path / "venv").resolve())  # the wheel, not src/
    assert report["version"] == __version__
    assert len(report["labels"]) == len(examples)
    assert all(labels and set(labels) <= {"circle", "square", "triangle", "sky", "grass", "water"}
               for labels in report["labels"]), report["labels"]


def test_version_flag(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0
    assert capsys.readouterr().out.strip() == f"mask2former {__version__}"


def test_one_version():
    import mask2former

    assert mask2former.__version__ == __version__
    assert re.fullmatch(r"\d+\.\d+\.\d+((a|b|rc)\d+)?(\.dev\d+)?", __version__)
    assert version_record() == {VERSION_KEY: __version__} and version_record() is not version_record()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '"mask2former.version.__version__"' in pyproject
    assert not re.search(r"(?m)^version\s*=\s*\"", pyproject)  # no second copy of the number


def test_changelog_has_an_unreleased_section_and_one_for_this_version():
    headings = re.findall(r"(?m)^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text())
    assert headings[:2] == ["Unreleased", __version__], headings


def test_a_missing_extra_is_named(monkeypatch):
    from mask2former.data import decode_coco_segmentation
    from mask2former.eval import evaluate_instance_segmentation

    for name in ("pycocotools", "pycocotools.mask", "pycocotools.coco", "pycocotools.cocoeval"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    with pytest.raises(MissingExtraError, match=re.escape("Mask AP needs pycocotools")) as error:
        evaluate_instance_segmentation({"images": [], "annotations": [], "categories": []}, [])
    assert "pip install 'mask2former[coco]'" in str(error.value)
    with pytest.raises(ImportError, match=re.escape("mask2former[coco]")):
        decode_coco_segmentation([[0, 0, 4, 0, 4, 4]], 8, 8)
    with pytest.raises(ValueError, match="unknown extra"):
        require("json", "cocoa", "A typo")
    assert require("json", "coco", "Nothing").dumps([]) == "[]"
