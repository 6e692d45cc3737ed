"""The refiner's transfer between machine-first models whose PCA fits differ in component signs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylecodec.errors import StylecodecError
from stylecodec.machine_first import MachineFirstModel
from stylecodec.train.refiner import transfer_refiner

from test_machine_first import _orth, faces, tiny_model


def _with_refiner(base: MachineFirstModel, seed: int) -> MachineFirstModel:
    m = MachineFirstModel({**base.config, "refiner": {"widths": [4, 8]}})
    m.load_state_dict(base.state_dict(), strict=False)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in m.refiner.parameters():       # a refiner that does something (its output layer starts at zero)
            p.normal_(0, 0.2)
    m.face_features = base.face_features
    return m.eval()


def _decode(m: MachineFirstModel, u8: np.ndarray) -> torch.Tensor:
    x = torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1
    with torch.no_grad():
        return m.render(m.encode_latents(x))


def test_transfer_undoes_pca_sign_flips():
    donor = _with_refiner(tiny_model(), seed=1)
    flipped = tiny_model()
    flip = {"id": [0, 3], "shape": [1], "pix": [0, 5, 17]}
    for kind, rows in flip.items():
        basis = getattr(flipped, f"{kind}_basis").clone()
        basis[rows] *= -1
        getattr(flipped, f"{kind}_basis").copy_(basis)
    target = _with_refiner(flipped, seed=2)
    face = faces(1)[0]
    assert (_decode(donor, face) - _decode(target, face)).abs().max() > 1e-3     # different refiners
    naive = _with_refiner(flipped, seed=2)
    naive.refiner.load_state_dict(donor.refiner.state_dict())
    signs = transfer_refiner(donor, target)
    assert (signs < 0).sum().item() == 6
    assert torch.allclose(_decode(donor, face), _decode(target, face), atol=1e-5)
    assert (_decode(donor, face) - _decode(naive, face)).abs().max() > 1e-3      # a plain copy is not the same


def test_transfer_refuses_a_different_pca_or_no_refiner():
    donor = _with_refiner(tiny_model(), seed=1)
    other = _with_refiner(tiny_model(), seed=2)
    other.pix_basis.copy_(torch.from_numpy(_orth(24, 768, 9)).to(other.pix_basis.dtype))
    with pytest.raises(StylecodecError, match="pix_basis"):
        transfer_refiner(donor, other)
    with pytest.raises(StylecodecError, match="no refiner"):
        transfer_refiner(tiny_model(), other)


def test_cached_latents_of_another_pca_fit_are_refused(tmp_path):
    """A latents.npz made with a PCA fit whose components have other signs is refused, not trained on."""
    from stylecodec.train.machine_first import check_latents, training_latents

    m = tiny_model()
    rng = np.random.default_rng(0)
    n = 6
    sface = rng.normal(size=(n, 2, 128)).astype(np.float32)
    teachers = {"sface": sface, "landmarks": (0.5 + 0.02 * rng.normal(size=(n, 68, 2))).astype(np.float32)}
    small = rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)
    ys = training_latents(m, teachers, np.arange(n), small)
    check_latents(m, ys, teachers, small, "own.npz")                      # its own latents pass
    other = tiny_model()
    basis = other.pix_basis.clone()
    basis[3] *= -1
    other.pix_basis.copy_(basis)
    with pytest.raises(StylecodecError, match="other.npz: layer 1"):
        check_latents(m, training_latents(other, teachers, np.arange(n), small), teachers, small, "other.npz")


def test_pca_signs_are_fixed():
    """The same data fitted twice gives the same components, signs included (randomised SVD with another
    random state; exact SVD of the negated data)."""
    from stylecodec.train.machine_first import _pca

    x = (np.random.default_rng(1).normal(size=(200, 40)) * np.linspace(3, 0.5, 40)).astype(np.float32)
    torch.manual_seed(0)
    _, a = _pca(x, 8, lowrank=True)
    torch.manual_seed(5)
    _, b = _pca(x, 8, lowrank=True)
    assert np.allclose(a, b, atol=1e-3)
    _, c = _pca(x.astype(np.float64), 8)
    _, d = _pca(-x.astype(np.float64), 8)
    assert np.allclose(c, d, atol=1e-8) and np.allclose(a, c, atol=1e-3)


def test_refiner_weights_file_round_trip_and_base_check(tmp_path):
    from stylecodec.train.refiner import is_refiner_file, load_refiner_weights, save_refiner_weights

    donor = _with_refiner(tiny_model(), seed=1)
    path = tmp_path / "refiner.pt"
    save_refiner_weights(donor, path, {"images_seen": 800, "cpu_hours": 0.5})
    assert is_refiner_file(path) and not is_refiner_file(tmp_path / "missing.pt")
    target = _with_refiner(tiny_model(), seed=2)
    assert load_refiner_weights(target, path) == {"images_seen": 800, "cpu_hours": 0.5}
    for (name, a), b in zip(donor.refiner.state_dict().items(), target.refiner.state_dict().values()):
        assert torch.equal(b, a.half().float()), name                          # float16 storage
    other = _with_refiner(tiny_model(), seed=2)
    other.pix_std.mul_(2)                                                       # another base model
    with pytest.raises(StylecodecError, match="trained for model"):
        load_refiner_weights(other, path)
