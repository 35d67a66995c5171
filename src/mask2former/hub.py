"""Find a checkpoint file in a local directory or download it from the Hugging Face hub.

``huggingface_hub`` is imported only when a hub id is actually used, so local use needs nothing beyond the core
dependencies. It sits at the top of the package, under ``config`` and ``io`` alike: both read files through it, and
``io`` depends on ``config``, never the reverse.
"""

from __future__ import annotations

import os
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit


class CheckpointNotFoundError(OSError):
    """A checkpoint file could not be found locally nor fetched from the hub."""


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return 1 <= len(parts) <= 2 and all(parts) and not name.startswith((".", "~")) and "\\" not in name


def resolve_file(
    path_or_hub_id: str | os.PathLike[str],
    filename: str,
    *,
    revision: str | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    local_files_only: bool = False,
    token: str | bool | None = None,
    required: bool = True,
    subfolder: str = "",
) -> Path | None:
    """Return the local path of ``filename`` inside a checkpoint directory or hub repository.

    A local directory wins over a hub id of the same spelling. With ``required=False`` a file that the checkpoint
    does not contain gives ``None`` (used to probe for ``model.safetensors`` before ``pytorch_model.bin``).
    ``subfolder``: the checkpoint sits in this folder of the directory or repository.
    """
    local = Path(path_or_hub_id).expanduser()
    if local.is_dir():
        local = local / subfolder if subfolder else local
        candidate = local / filename
        if candidate.is_file():
            return candidate
        if required:
            raise CheckpointNotFoundError(f"{local} has no {filename}; is it a Mask2Former checkpoint directory?")
        return None

    name = str(path_or_hub_id)
    if local.exists():
        raise CheckpointNotFoundError(f"{name} is a file; pass the checkpoint folder that holds config.json and "
                                      "model.safetensors.")
    if not _looks_like_hub_id(name):
        raise CheckpointNotFoundError(
            f"{name}: no such folder (and it is not a hub id like 'facebook/mask2former-swin-tiny-coco-panoptic'); "
            "check the path."
        )
    if "/" in name and Path(name.split("/")[0]).expanduser().is_dir():
        raise CheckpointNotFoundError(
            f"{name}: no such folder ({name.split('/')[0]}/ exists, {name.split('/', 1)[1]} is not in it); check the "
            "path."
        )
    try:
        import huggingface_hub
        from huggingface_hub import constants
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise CheckpointNotFoundError(
            f"{name} is not a local directory, and downloading it needs the huggingface_hub package "
            "(pip install 'mask2former[hub]'); or download the checkpoint yourself and pass its directory."
        ) from err

    offline = local_files_only or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    offline = offline or not _hub_reachable(constants.ENDPOINT)  # the cache only: no retries
    try:
        downloaded = huggingface_hub.hf_hub_download(
            repo_id=name,
            filename=filename,
            subfolder=subfolder or None,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            token=token,
        )
    except LocalEntryNotFoundError as err:  # before EntryNotFoundError: in some versions a subclass of it
        if not required and offline:
            return None
        raise CheckpointNotFoundError(f"{name}: no such folder, and " + _offline_message(name, filename)) from err
    except EntryNotFoundError:
        if required:
            raise CheckpointNotFoundError(f"The hub repository {name} has no file {filename}.") from None
        return None
    except Exception as err:  # network errors, unknown repositories, authentication
        if not required and "404" in str(err):
            return None
        raise CheckpointNotFoundError(f"Could not download {filename} from the hub repository {name}: {err}\n"
                                      + _offline_message(name, filename)) from err
    return Path(downloaded)


@lru_cache(maxsize=4)
def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the hub's host opens within ``timeout`` seconds (asked once per process): without
    network, downloads would retry for half a minute before failing."""
    parts = urlsplit(endpoint)
    try:
        with socket.create_connection((parts.hostname or "", parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


def _offline_message(name: str, filename: str) -> str:
    return (
        f"{filename} of the hub repository {name} is not in the local hub cache and the hub cannot be reached "
        "(offline, or "
        "HF_HUB_OFFLINE=1). Download the checkpoint on a machine with network access, e.g. "
        f"`huggingface-cli download {name} --local-dir ./{name.split('/')[-1]}`, copy that directory here and pass "
        "its path instead of the hub id."
    )
