"""The disk cache of face alignments (stylecodec.eval.align_cache): a cached face is the freshly
aligned one bit for bit, "no face" persists, processes sharing a file keep each other's entries,
a damaged file is set aside. Detection is replaced by a fixed transform here (no weights needed);
the warp is the real one."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from stylecodec import align
from stylecodec.images import centre_square
from stylecodec.eval import align_cache as AC
from stylecodec.eval.align_cache import AlignmentCache, content_key

R = 32


def _photo(seed: int) -> np.ndarray:
    return (np.random.RandomState(seed).rand(50, 44, 3) * 255).astype(np.uint8)


@pytest.fixture
def detector(monkeypatch):
    """align() with a fixed similarity transform per photo; photos whose first pixel is odd have no face."""
    calls = []

    def fake_align(img, resolution, which="largest", detector="auto"):
        calls.append(content_key(img))
        if img[0, 0, 0] % 2:
            raise align.NoFaceError("no face")
        m = np.array([[0.61, -0.05, 1.5], [0.05, 0.61, -2.25]])
        return [align.AlignedFace(align.warp_face(img, m, resolution), m, np.zeros((5, 2), np.float32),
                              np.zeros(4, np.float32), 1.0, "fake")]

    monkeypatch.setattr(align, "align", fake_align)
    return calls


def _photos(n: int, face: bool) -> list[np.ndarray]:
    out = [p for p in (_photo(s) for s in range(40)) if bool(p[0, 0, 0] % 2) != face]
    return out[:n]


def test_cached_alignment_is_the_fresh_one_and_persists(detector, tmp_path):
    face, noface = _photos(1, True)[0], _photos(1, False)[0]
    first = AlignmentCache(tmp_path, R)
    a, found = first.aligned(face)
    b, found_b = first.aligned(noface)
    assert found and not found_b and a.shape == b.shape == (R, R, 3) and len(detector) == 2
    assert np.array_equal(b, np.asarray(centre_square(Image.fromarray(noface), R)))    # no face: centre square
    first.save()
    again = AlignmentCache(tmp_path, R)                      # another process / a later run
    assert len(again) == 2
    a2, f2 = again.aligned(face)
    b2, g2 = again.aligned(noface)
    assert len(detector) == 2 and (again.hits, again.misses) == (2, 0)   # no detection
    assert np.array_equal(a, a2) and np.array_equal(b, b2) and f2 and not g2
    assert AlignmentCache(tmp_path, 2 * R).path != again.path and len(AlignmentCache(tmp_path, 2 * R)) == 0
    assert len(AlignmentCache(None, R)) == 0                 # no folder: this process only
    AlignmentCache(None, R).save()


def test_processes_sharing_a_file_merge(detector, tmp_path, monkeypatch):
    x, y = _photos(2, True)
    one, two = AlignmentCache(tmp_path, R), AlignmentCache(tmp_path, R)     # both opened before any save
    one.aligned(x)
    two.aligned(y)
    one.save()
    two.save()                                               # must keep one's entry
    assert len(AlignmentCache(tmp_path, R)) == 2
    monkeypatch.setattr(AC, "SAVE_EVERY_S", 0.0)             # saved from inside aligned() as it goes
    three = AlignmentCache(tmp_path / "sub", R)
    three.aligned(x)
    assert len(AlignmentCache(tmp_path / "sub", R)) == 1


def test_damaged_file_is_set_aside(detector, tmp_path):
    cache = AlignmentCache(tmp_path, R)
    cache.path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="alignment cache .* is damaged"):
        fresh = AlignmentCache(tmp_path, R)
    assert len(fresh) == 0 and cache.path.with_name(cache.path.name + ".bad").is_file()
    fresh.aligned(_photos(1, True)[0])
    fresh.save()
    assert len(AlignmentCache(tmp_path, R)) == 1


def test_coded_faces_use_the_disk_cache(detector, tmp_path):
    """Two LFW coders in different 'processes' (fresh memos): the second aligns nothing and counts
    the same no-face fallbacks."""
    import torch

    from stylecodec.codec import Codec
    from stylecodec.eval.lfw import CodedFaces
    from stylecodec.model import StyleCodecModel, tiny_config

    torch.manual_seed(0)
    codec = Codec(StyleCodecModel(tiny_config()))
    photos = _photos(2, True) + _photos(1, False)
    first = CodedFaces(codec, 1, 2, None, align_cache=tmp_path)
    streams = [first.stream(p) for p in photos]
    first.save()
    assert first.fallbacks == 1 and len(detector) == 3
    second = CodedFaces(codec, 1, 2, None, align_cache=tmp_path)
    assert [second.stream(p) for p in photos] == streams and second.fallbacks == 1 and len(detector) == 3
