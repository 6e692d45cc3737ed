"""Checkpoint split/join for moving runs through a 16 MiB-per-file channel."""
from __future__ import annotations

import pytest
import torch

from stylecodec.errors import StylecodecError
from stylecodec.train.transfer import join_checkpoint, split_checkpoint


def _ckpt(path):
    g = torch.Generator().manual_seed(0)
    ck = {"step": 7, "config": {"lr": 0.002, "name": "x"},
          "nets": {"G": {f"w{i}": torch.randn(300, 300, generator=g) for i in range(6)}},
          "optim": {"state": [torch.randn(10, generator=g)]},
          "ints": torch.arange(5), "shape": [1, 2, 3]}
    torch.save(ck, path)
    return ck


def test_round_trip_exact_in_several_shards(tmp_path):
    ck = _ckpt(tmp_path / "a.pt")
    files = split_checkpoint(tmp_path / "a.pt", tmp_path / "parts", max_mib=0.8)
    assert len(files) >= 4 and all(f.stat().st_size <= 0.8 * 2**20 for f in files)
    back = torch.load(join_checkpoint(tmp_path / "parts", tmp_path / "b.pt"), weights_only=True)
    assert back["step"] == 7 and back["config"] == ck["config"] and back["shape"] == [1, 2, 3]
    for k, t in ck["nets"]["G"].items():
        assert torch.equal(back["nets"]["G"][k], t)
    assert torch.equal(back["ints"], ck["ints"])


def test_drop_and_half(tmp_path):
    ck = _ckpt(tmp_path / "a.pt")
    split_checkpoint(tmp_path / "a.pt", tmp_path / "parts", drop=("optim",), half=True)
    back = torch.load(join_checkpoint(tmp_path / "parts", tmp_path / "b.pt"), weights_only=True)
    assert "optim" not in back and back["ints"].dtype == torch.int64
    w = back["nets"]["G"]["w0"]
    assert w.dtype == torch.float32 and torch.equal(w, ck["nets"]["G"]["w0"].half().float())
    with pytest.raises(StylecodecError, match="no such entry"):
        split_checkpoint(tmp_path / "a.pt", tmp_path / "p2", drop=("nope",))


def test_damaged_shard_is_refused(tmp_path):
    _ckpt(tmp_path / "a.pt")
    files = split_checkpoint(tmp_path / "a.pt", tmp_path / "parts", max_mib=0.8)
    data = bytearray(files[1].read_bytes())
    data[-100] ^= 1
    files[1].write_bytes(bytes(data))
    with pytest.raises(StylecodecError, match="damaged"):
        join_checkpoint(tmp_path / "parts", tmp_path / "b.pt")
    assert not (tmp_path / "b.pt").exists()
