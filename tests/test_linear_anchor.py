"""The linear-prior anchor (eigenfaces + the project's entropy coder): exact round trips, rate
ordering, the cached PCA and its key, damaged files. A tiny synthetic face folder (40 faces at
48², PCA at 16²) keeps the fit well under a second; the cache lives in a temporary folder."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from stylecodec.anchors import ANCHORS, AnchorError, get_anchor
from stylecodec.anchors import linear
from stylecodec.anchors.linear import DEFAULT_POINTS, HEADER_BYTES, LinearAnchor, _header, crc5, fit_pca, model_key
from stylecodec.eval.settings import anchor_specs, setting_name

POINTS = [(4, 0.8), (8, 0.4), (16, 0.2), (24, 0.1)]


def _face(rng: np.random.Generator, size: int = 48) -> np.ndarray:
    """A smooth random face-like picture: background gradient, skin ellipse, two eyes, a mouth."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    bg = rng.uniform(40, 200, 3) + rng.uniform(-40, 40, 3) * xx[..., None]
    cx, cy, rx, ry = 0.5 + rng.normal(0, 0.03), 0.5 + rng.normal(0, 0.03), rng.uniform(0.25, 0.33), rng.uniform(0.3, 0.4)
    skin = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 < 1)[..., None]
    img = np.where(skin, rng.uniform(120, 230, 3), bg)
    for ex in (cx - 0.12, cx + 0.12):
        eye = (((xx - ex) / 0.05) ** 2 + ((yy - cy + 0.08) / 0.03) ** 2 < 1)[..., None]
        img = np.where(eye, rng.uniform(0, 80, 3), img)
    mouth = (((xx - cx) / 0.1) ** 2 + ((yy - cy - 0.15) / 0.025) ** 2 < 1)[..., None]
    img = np.where(mouth, np.array([170.0, 70.0, 70.0]), img)
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def faces_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("faces")
    rng = np.random.default_rng(0)
    for i in range(40):
        Image.fromarray(_face(rng)).save(d / f"{i:03d}.png")
    return d


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLECODEC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def tiny(faces_dir, **kw) -> LinearAnchor:
    args = {"data": faces_dir, "fit_count": 30, "resolution": 16, "points": POINTS, "val_count": 5, **kw}
    return LinearAnchor(**args)


def test_registered_and_swept_like_the_other_anchors(faces_dir, cache):
    assert ANCHORS["linear"] is LinearAnchor
    a = get_anchor("linear", data=faces_dir, fit_count=30, resolution=16, points=POINTS, val_count=5)
    assert a.sweep_values == (3, 2, 1, 0) and a.q_range == (0, 3) and a.higher_is_better
    spec = anchor_specs(["linear"], {}, [])[0]
    assert spec.qs == tuple(range(len(DEFAULT_POINTS) - 1, -1, -1))
    assert setting_name(a.quality_name, 2) == "point2"
    with pytest.raises(AnchorError, match="outside"):
        a.encode(_face(np.random.default_rng(9)), 4)


def test_round_trip_is_exact_and_bytes_grow_with_the_rate_point(faces_dir, cache):
    a = tiny(faces_dir)
    img = _face(np.random.default_rng(123), 64)             # not a fitted face, another size
    sizes, errs = [], []
    for q in range(len(POINTS)):
        enc, rec = a.roundtrip(img, q)
        k, step = POINTS[q]
        c_hat = a.decode_coefficients(enc.data)
        assert c_hat.shape == (k,) and np.array_equal(c_hat, enc.meta["coefficients"])      # bit-exact
        assert np.allclose(c_hat / step, np.round(c_hat / step), rtol=0, atol=1e-9)         # on the step grid
        assert enc.data[0] >> 5 == q and enc.nbytes == enc.payload_bytes + HEADER_BYTES
        assert rec.shape == img.shape and rec.dtype == np.uint8
        assert np.array_equal(a.decode(enc.data, img.shape[:2]), rec)                       # deterministic
        sizes.append(enc.nbytes)
        errs.append(np.mean((rec.astype(float) - img) ** 2))
    assert all(b >= s for s, b in zip(sizes, sizes[1:])) and sizes[-1] > sizes[0], sizes
    assert errs[-1] < errs[0], errs
    assert a.decode(a.encode(img, 1).data, (16, 16)).shape == (16, 16, 3)                  # P x P: no resize


def test_pca_is_cached_under_a_key_of_what_it_depends_on(faces_dir, cache, monkeypatch):
    a = tiny(faces_dir)
    m = a.model()
    path = a.cache_path()
    assert path.is_file() and path.parent == cache / "anchors" and path.name.startswith("linear-")
    assert m.basis.shape == (24, 3 * 16 * 16) and np.allclose(m.basis @ m.basis.T, np.eye(24), atol=1e-5)
    assert np.all(np.diff(m.std) <= 1e-9)
    monkeypatch.setattr(linear, "fit_pca", lambda *a, **k: pytest.fail("refitted instead of loading the cache"))
    b = tiny(faces_dir)
    assert np.array_equal(b.model().basis, m.basis)
    names = a.fit_names()
    key = model_key(faces_dir, names, 16, 24)
    assert key != model_key(faces_dir, names[:-1], 16, 24)        # N
    assert key != model_key(faces_dir, names, 32, 24)             # P
    assert key != model_key(faces_dir, names, 16, 8)              # K
    assert {tiny(faces_dir, fit_count=n, resolution=p, points=pts).cache_path().name
            for n, p, pts in [(30, 16, POINTS), (29, 16, POINTS), (30, 8, POINTS), (30, 16, POINTS[:2])]} \
        .__len__() == 4
    (faces_dir / "000.png").write_bytes((faces_dir / "000.png").read_bytes() + b"\0")  # a file changed size
    try:
        assert tiny(faces_dir).cache_path() != path
    finally:
        (faces_dir / "000.png").write_bytes((faces_dir / "000.png").read_bytes()[:-1])


def test_damaged_files_are_anchor_errors(faces_dir, cache):
    """The header's CRC-5 catches every single-bit error whatever the entropy coder checks; a file
    whose header is intact but names other rate points is refused too."""
    a = tiny(faces_dir)
    data = a.encode(_face(np.random.default_rng(5)), 3).data
    payload = data[HEADER_BYTES:]
    bad = {"empty": (b"", "empty file"), "header only": (data[:1], "damaged"),
           "truncated": (data[:-1], "damaged"), "extra byte": (data + b"\x55", "damaged"),
           "unknown rate point": (bytes([_header(7, payload)]) + payload, "names rate point 7"),
           "other rate point": (bytes([_header(0, payload)]) + payload, "damaged payload")}
    for what, (d, message) in bad.items():
        with pytest.raises(AnchorError, match=f"linear: .*{message}") as e:
            a.decode(d, (48, 48))
        assert "\n" not in str(e.value), what
    for i in range(len(data)):
        for bit in range(8):
            d = bytearray(data)
            d[i] ^= 1 << bit
            with pytest.raises(AnchorError, match="linear: damaged"):
                a.decode(bytes(d), (48, 48))


def test_crc5_detects_single_bit_errors_and_short_bursts():
    rng = np.random.default_rng(1)
    for n in (1, 7, 40):
        msg = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        ref = crc5(msg)
        assert 0 <= ref < 32
        for pos in range(8 * n):
            for burst in (0b1, 0b11, 0b101, 0b11111):
                if pos + burst.bit_length() > 8 * n:
                    continue
                bits = int.from_bytes(msg, "big") ^ (burst << (8 * n - pos - burst.bit_length()))
                assert crc5(bits.to_bytes(n, "big")) != ref, (n, pos, burst)


def test_fit_needs_enough_faces_and_components(faces_dir, cache, tmp_path):
    with pytest.raises(AnchorError, match="fewer than the 100"):
        tiny(faces_dir, fit_count=100).check_available()
    with pytest.raises(AnchorError, match="needs the training faces"):
        tiny(tmp_path / "nowhere").check_available()
    with pytest.raises(AnchorError, match="cannot fit 30 components to 30 faces"):
        fit_pca(np.zeros((30, 10), np.float32), 30)
    with pytest.raises(AnchorError, match="rate points"):
        LinearAnchor(points=[(0, 1.0)])


def test_eval_leaves_the_linear_prior_out_with_a_note_without_training_faces(faces_dir, cache, tmp_path, monkeypatch):
    from stylecodec.eval.choices import METRIC_GROUPS
    from stylecodec.eval.harness import EvalConfig, run_eval

    monkeypatch.setenv("STYLECODEC_DATA", str(tmp_path / "no-faces"))
    with pytest.warns(UserWarning, match="anchor linear not run"):
        res = run_eval(EvalConfig(faces_dir, tmp_path / "run", model=None, anchors=["linear"], downscale=[], thumbs=0,
                                  skip_metrics=tuple(METRIC_GROUPS), resolution=48, progress=False))
    assert res["rows_total"] == 0
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any(n.startswith("anchor linear not run: linear: needs the training faces") for n in info["notes"])


def test_headline_shows_the_linear_prior_at_the_same_bytes():
    from stylecodec.eval.tables import _MEANS, headline, mean_table

    def row(codec, setting, family, nbytes, psnr):
        return {**{c: math.nan for c in _MEANS}, "image": "a", "codec": codec, "setting": setting, "family": family,
                "point": "sweep", "error": "", "bytes": nbytes, "bpp": 8 * nbytes / 256 ** 2, "psnr": psnr}

    rows = [row(c, "q0", "stylecodec", b, 20.0) for c, b in
            (("stylecodec-basic", 20), ("stylecodec-middle", 40), ("stylecodec-all", 50))]
    rows += [row("linear", f"point{q}", "linear", b, 20 + q) for q, b in enumerate((30, 45, 60))]
    labels = {h["setting"]: h["label"] for h in headline(mean_table(rows), {"default_quality": None})
              if h["codec"] == "linear"}
    assert list(labels) == ["point1"] and "at most the same bytes" in labels["point1"]
    rows = [r for r in rows if r["setting"] != "point0" and r["setting"] != "point1"]
    labels = {h["setting"]: h["label"] for h in headline(mean_table(rows), {"default_quality": None})
              if h["codec"] == "linear"}
    assert list(labels) == ["point2"] and "fewest bytes" in labels["point2"]
