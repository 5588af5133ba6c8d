"""Pretrained weights in torch's hub cache, fetched only when the network answers.

Files live in ``torch.hub.get_dir()/checkpoints`` (which follows ``TORCH_HOME``), under the
name of their download URL. The machine the app runs on may be offline, so a missing file
is downloaded only after a quick reachability probe, and any failure becomes a
``WeightsUnavailableError`` telling the user which file to put where. Files are always read
with ``weights_only=True``: a pickle could run code.
"""
from __future__ import annotations

import os
import socket
import threading
import urllib.error
import urllib.parse
from pathlib import Path

import torch

from ..errors import WeightsUnavailableError
from .checkpoints import normalize_keys

_PROBE_TIMEOUT_S = 3.0


def hub_path(url: str) -> Path:
    """Where torch's hub cache keeps the file downloaded from ``url``."""
    filename = os.path.basename(urllib.parse.urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _reachable(url: str) -> bool:
    """Fast offline check: can we open a TCP connection to the download host at all?

    Runs in a daemon thread because name resolution has no timeout of its own and can
    stall for tens of seconds on a machine without a network.
    """
    parsed = urllib.parse.urlparse(url)
    connected: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection((parsed.hostname, parsed.port or 443), timeout=_PROBE_TIMEOUT_S).close()
            connected.append(True)
        except OSError:
            pass

    probe = threading.Thread(target=connect, daemon=True)
    probe.start()
    probe.join(_PROBE_TIMEOUT_S)
    return bool(connected)


def _download(url: str, path: Path) -> None:
    if not _reachable(url):
        raise urllib.error.URLError(f"{urllib.parse.urlparse(url).hostname} is unreachable")
    path.parent.mkdir(parents=True, exist_ok=True)
    match = torch.hub.HASH_REGEX.search(path.name)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=match.group(1) if match else None)


def hub_state_dict(name: str, url: str, allow_download: bool) -> dict[str, torch.Tensor]:
    """The state dict of model ``name`` cached from ``url``, downloaded first if allowed and possible."""
    path = hub_path(url)
    advice = (f"Weights for {name} are not available offline: download {path.name} from "
              f"{url} and put it in {path.parent}.")
    if not path.is_file():
        if not allow_download:
            raise WeightsUnavailableError(advice)
        try:
            _download(url, path)
        except (OSError, RuntimeError, urllib.error.URLError):  # network, disk, or hash mismatch
            raise WeightsUnavailableError(advice) from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsUnavailableError(
            f"The weights file {path} for {name} is corrupt ({type(err).__name__}); delete it and "
            f"download {path.name} again from {url}.") from None
    return normalize_keys(state)
