"""Checkpoint files that are data, never code.

A checkpoint is one `.npz` archive (opened with `allow_pickle=False`): a JSON document under
the key `__meta__` plus plain numeric arrays. Nested states may hold numpy arrays or torch
tensors anywhere; `pack` moves them into the archive and leaves a reference in the JSON.
Opening a shared checkpoint therefore cannot run code, and a truncated or foreign file is a
clear `CheckpointError`.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "modelmarket-checkpoint"
VERSION = 1
_META = "__meta__"
_REF = "__array__"
_DTYPE = "__torch_dtype__"


class CheckpointError(ValueError):
    """A file that is not a readable checkpoint of this format."""


def pack(state: Any, arrays: dict[str, np.ndarray]) -> Any:
    """JSON-able copy of `state` with every array/tensor moved into `arrays`."""
    if isinstance(state, torch.Tensor):
        key = f"a{len(arrays)}"
        arrays[key] = state.detach().cpu().numpy()
        return {_REF: key, _DTYPE: str(state.dtype)}
    if isinstance(state, np.ndarray):
        key = f"a{len(arrays)}"
        arrays[key] = state
        return {_REF: key}
    if isinstance(state, dict):
        return {str(k): pack(v, arrays) for k, v in state.items()}
    if isinstance(state, list | tuple):
        return [pack(v, arrays) for v in state]
    if isinstance(state, np.generic):
        return state.item()
    return state


def unpack(state: Any, arrays: dict[str, np.ndarray]) -> Any:
    """Inverse of `pack`: references become numpy arrays or torch tensors again."""
    if isinstance(state, dict):
        if _REF in state:
            array = arrays[state[_REF]]
            if _DTYPE in state:
                return torch.from_numpy(np.array(array))
            return np.array(array)
        return {k: unpack(v, arrays) for k, v in state.items()}
    if isinstance(state, list):
        return [unpack(v, arrays) for v in state]
    return state


def save(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` atomically (temporary file, then rename): a crash never leaves half a file."""
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta = {"format": FORMAT, "version": VERSION, "state": pack(state, arrays)}
    encoded = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{_META: encoded}, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save`; anything else raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as archive:
            if _META not in archive.files:
                raise CheckpointError(f"{path} is not a modelmarket checkpoint (no metadata)")
            entries = {k: archive[k] for k in archive.files}
        if not all(isinstance(v, np.ndarray) for v in entries.values()) \
                or entries[_META].dtype != np.uint8:
            raise CheckpointError(f"{path} is not a modelmarket checkpoint (foreign entries)")
        meta = json.loads(entries.pop(_META).tobytes().decode("utf-8"))
        arrays = entries
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError,
            UnicodeDecodeError) as exc:
        detail = "a pickled object" if "allow_pickle" in str(exc) else str(exc)
        raise CheckpointError(
            f"{path} is not a readable modelmarket checkpoint (truncated or foreign file: "
            f"{detail})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a modelmarket checkpoint (format "
                              f"{meta.get('format') if isinstance(meta, dict) else None!r})")
    if meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: checkpoint version {meta.get('version')!r} is not "
                              f"supported (this release reads version {VERSION})")
    try:
        return unpack(meta["state"], arrays)
    except KeyError as exc:
        raise CheckpointError(f"{path}: checkpoint refers to a missing array {exc}") from exc
