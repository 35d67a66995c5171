"""The package's layout rules, read from the source: who may import whom, and what importing and using the
processor may change in the process."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "mask2former"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, imported names) of every import in the file, lazy ones inside functions included, relative ones
    resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.append((base, [alias.name for alias in node.names]))
    return found


SOURCES = {module_name(path): imports(path) for path in PACKAGE.rglob("*.py")}


def test_the_sources_are_found():
    assert {"mask2former.config", "mask2former.cli", "mask2former.preprocess.image_processor",
            "mask2former.postprocess.semantic", "mask2former.distributed"} <= set(SOURCES)


def test_config_does_not_depend_on_io():
    """io reads and writes checkpoints and depends on config; config must not depend on io."""
    for module, _ in SOURCES["mask2former.config"]:
        assert not (module == "mask2former.io" or module.startswith("mask2former.io.")), module


def test_no_module_imports_another_modules_private_names():
    """Underscore names stay inside their module: the CLI shares nothing private with train/, nor preprocess/
    with postprocess/."""
    offenders = []
    for importer, found in SOURCES.items():
        for module, names in found:
            if module.startswith("mask2former") and module != importer:
                offenders += [f"{importer} imports {module}.{name}" for name in names
                              if name.startswith("_") and not name.startswith("__")]
    assert offenders == []


def test_the_cli_imports_nothing_private_from_train():
    for module, names in SOURCES["mask2former.cli"]:
        if module.startswith("mask2former.train"):
            assert all(not name.startswith("_") for name in names), (module, names)


def test_preprocess_and_postprocess_are_separate_rooms():
    """Post-processing needs nothing from preprocessing; the processor class reaches post-processing through its
    public functions only."""
    for name, found in SOURCES.items():
        if name.startswith("mask2former.postprocess"):
            assert not any(module.startswith("mask2former.preprocess") for module, _ in found), name


PROCESS_STATE = r"""
import ctypes, os, sys
import PIL.Image

registered = []
real_register = os.register_at_fork
os.register_at_fork = lambda **hooks: registered.append(hooks) or real_register(**hooks)
capsule = ctypes.pythonapi.PyCapsule_GetPointer


def state():
    core = PIL.Image.core
    return (core.get_blocks_max(), core.get_block_size(), core.get_alignment(), capsule.restype, capsule.argtypes,
            PIL.Image.MAX_IMAGE_PIXELS)


before = state()
import numpy as np
import mask2former
from mask2former import Mask2FormerImageProcessor

processor = Mask2FormerImageProcessor()
rng = np.random.default_rng(0)
images = [rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), PIL.Image.fromarray(rng.integers(0, 256, (300, 200),
          dtype=np.uint8))]
batch = processor(images, return_tensors="pt")
assert batch["pixel_values"].shape == (2, 3, 1216, 1088), batch["pixel_values"].shape
after = state()
assert after == before, (before, after)
ours = [hooks for hooks in registered
        if any((getattr(hook, "__module__", None) or "").startswith("mask2former") for hook in hooks.values())]
assert ours == [], ours  # other libraries (logging, random, torch) register their own at import
print("unchanged")
"""


def test_importing_and_using_the_processor_changes_no_process_wide_state():
    """Pillow's memory settings, ctypes' shared function prototypes and fork handlers are the application's:
    ``import mask2former`` and a processor call leave them as they were (checked in a fresh interpreter)."""
    result = subprocess.run([sys.executable, "-c", PROCESS_STATE], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "unchanged" in result.stdout, result.stderr[-2000:]
