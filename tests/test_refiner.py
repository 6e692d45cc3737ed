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
