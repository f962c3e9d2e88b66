import pickle
import zipfile

import numpy as np
import pytest
import torch

from models import checkpoint
from models.checkpoint import CheckpointError


def test_nested_state_round_trips(tmp_path):
    state = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "t": torch.tensor([1, 2, 3]),
             "nested": [{"g": torch.ByteTensor([1, 2])}, 3.5, None, "x"], "n": float("nan")}
    path = tmp_path / "c.npz"
    checkpoint.save(path, state)
    back = checkpoint.load(path)
    np.testing.assert_array_equal(back["a"], state["a"])
    assert back["a"].dtype == np.float32
    assert isinstance(back["t"], torch.Tensor) and back["t"].tolist() == [1, 2, 3]
    assert back["nested"][0]["g"].dtype == torch.uint8
    assert back["nested"][1:] == [3.5, None, "x"] and np.isnan(back["n"])


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {"a": np.ones(1000)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or foreign"):
        checkpoint.load(path)


def test_foreign_files_are_refused(tmp_path):
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.ones(3))
    with pytest.raises(CheckpointError, match="no metadata"):
        checkpoint.load(plain)
    text = tmp_path / "text.npz"
    text.write_text("hello")
    with pytest.raises(CheckpointError):
        checkpoint.load(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.npz")


def test_pickled_content_is_never_executed(tmp_path):
    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('code ran')",))

    path = tmp_path / "evil.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("__meta__.npy", pickle.dumps(Boom()))
    with pytest.raises(CheckpointError):
        checkpoint.load(path)


def test_wrong_format_and_version(tmp_path):
    path = tmp_path / "c.npz"
    checkpoint.save(path, {})
    with np.load(path) as archive:
        meta = archive["__meta__"].tobytes().decode().replace('"version": 1', '"version": 99')
    np.savez(path, __meta__=np.frombuffer(meta.encode(), dtype=np.uint8))
    with pytest.raises(CheckpointError, match="version 99"):
        checkpoint.load(path)
