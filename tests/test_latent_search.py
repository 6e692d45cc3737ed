"""The encoder's search of the pixel latents (stylecodec.latent_search): better decoded faces, same format."""
from __future__ import annotations

from dataclasses import fields, replace

import numpy as np
import pytest
import torch

from stylecodec.codec import Codec
from stylecodec.errors import StylecodecError
from stylecodec.latent_search import LatentSearch, SearchConfig
from stylecodec.rate import fits_budget

from test_machine_first import faces, tiny_model
from test_analysis import teachers  # noqa: F401  (fixture: facenet weights cached, or skip)
from test_metrics import lpips_mod  # noqa: F401  (fixture: LPIPS weights cached, or skip)
from test_refiner import _with_refiner


def _x(u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(u8).permute(2, 0, 1)[None].float() / 127.5 - 1


def test_search_lowers_the_emulated_distortion(lpips_mod):
    m = _with_refiner(tiny_model(), seed=1)
    x = _x(faces(1)[0])
    with torch.no_grad():
        ys = [y.double() for y in m.encode_latents(x)]

    def distortion(search, found):
        with torch.no_grad():
            out = m([y.float() for y in found], torch.full((1,), 3), quant="ste")
            return search.distortion(m.render(out["y_hat"]), x).item()

    idle = LatentSearch(m, SearchConfig(steps=0))
    assert all(torch.equal(a, b) for a, b in zip(idle(x, ys, 3), ys))          # 0 steps: the plain latents
    search = LatentSearch(m, SearchConfig(steps=30, lr=0.1))
    found = search(x, ys, 3)
    assert torch.equal(found[0], ys[0])                                          # the basic layer is not touched
    assert distortion(search, found) < 0.98 * distortion(search, ys)
    assert all(p.requires_grad for p in m.parameters())                         # the model is left as it was


def _plain_and_searched_within_budget(plain, searching, face):
    """Both codecs' streams of ``face`` at a budget with 2 B of room above quality 3; checks that the searched
    one fits and decodes no farther from the face (the search's own distortion) than the plain one."""
    budget = 8 * (len(plain.compress(face, quality=3, aligned=True)) + 2) / 32 ** 2
    a = plain.compress(face, bpp=budget, aligned=True)
    b = searching.compress(face, bpp=budget, aligned=True)
    assert fits_budget(b, 32, budget)
    x = _x(face)
    da, db = (searching.search.distortion(_x(plain.decompress(s, output="array")), x).item() for s in (a, b))
    assert db <= da                                                              # never worse than the plain encoder
    return a, b


def test_searched_streams_fit_the_budget_and_decode_anywhere(lpips_mod):
    m = _with_refiner(tiny_model(), seed=1)
    plain, searching = Codec(m), Codec(m).set_search(30, lr=0.1)
    changed = 0
    for face in faces(3, seed=4):
        a, b = _plain_and_searched_within_budget(plain, searching, face)
        changed += a != b
        # the format is unchanged: a codec without the search decodes the searched stream, to the same pixels
        assert np.array_equal(plain.decompress(b, output="array"), searching.decompress(b, output="array"))
        c = searching.compress(face, quality=2, aligned=True)                   # a fixed quality: no more bytes
        assert len(c) <= len(plain.compress(face, quality=2, aligned=True)) + 1
    assert changed >= 1                                                          # the search found better latents


def test_identity_search_through_the_codec(lpips_mod, teachers):
    # with w_id the codec's keep-or-drop choice scores both streams with the identity term (the original's
    # facenet embedding computed once): the stream it keeps is the one of lower distortion, within the budget
    m = _with_refiner(tiny_model(), seed=1)
    _plain_and_searched_within_budget(Codec(m), Codec(m).set_search(5, lr=0.1, w_id=0.5), faces(1, seed=4)[0])


def test_search_settings_are_checked():
    with pytest.raises(ValueError, match="bad search config"):
        SearchConfig(steps=-1)
    with pytest.raises(ValueError, match="bad search config"):
        SearchConfig(lr=0)
    with pytest.raises(ValueError, match="bad search config"):
        SearchConfig(w_id=-1)
    with pytest.raises(StylecodecError, match="search steps"):
        Codec(tiny_model()).set_search(-2)
    assert Codec(tiny_model()).set_search(0).search is None


def test_searching_codecs_key_their_results_apart(lpips_mod):
    # cached results (LFW embeddings, evaluation rows) of a searching encoder are not the plain encoder's
    plain, a, b = Codec(tiny_model()), Codec(tiny_model()).set_search(5), Codec(tiny_model()).set_search(6)
    assert plain.results_id == plain.weights_id == a.weights_id
    assert len({plain.results_id, a.results_id, b.results_id}) == 3
    assert a.results_id == Codec(tiny_model()).set_search(5).results_id
    # other weights of the same step count write other streams; fields left at their defaults do not rename a key
    assert Codec(tiny_model()).set_search(5, w_mse=30).results_id not in {a.results_id, b.results_id}
    assert SearchConfig(steps=5, w_id=0.0, w_mse=15.0).key() == "s5"


def test_search_key_does_not_follow_the_defaults():
    # keys are spelled against fixed base values, so a changed default never re-means a cached key
    from stylecodec.latent_search import _KEY_BASE
    assert set(_KEY_BASE) == {f.name for f in fields(SearchConfig)} - {"steps"}
    base = SearchConfig(steps=7, **_KEY_BASE)
    assert base.key() == "s7"
    assert replace(base, w_mse=25.0).key() != "s7" and replace(base, w_mse=25.0).key().startswith("s7-")


def test_identity_term_is_facenet_cosine_and_differentiable(lpips_mod, teachers):
    # w_id adds w_id * (1 - cos(facenet(decoded), facenet(original))) to the distortion, with gradients to the face
    m = tiny_model()
    x = _x(faces(1)[0])
    x_hat = _x(faces(1, seed=5)[0]).requires_grad_(True)
    with_id = LatentSearch(m, SearchConfig(steps=1, w_id=2.0))
    without = LatentSearch(m, SearchConfig(steps=1))
    assert without.facenet is None                                              # off: facenet is not loaded
    extra = with_id.distortion(x_hat, x) - without.distortion(x_hat, x)
    cos = torch.nn.functional.cosine_similarity(with_id.identity(x_hat), with_id.identity(x))
    assert torch.allclose(extra, 2.0 * (1 - cos), atol=1e-5) and float(extra.detach()) > 0.01
    assert torch.allclose(with_id.distortion(x, x), without.distortion(x, x), atol=1e-5)   # no term for the original
    given = with_id.distortion(x_hat, x, with_id.identity(x))                  # the original's identity passed in
    assert torch.allclose(given, with_id.distortion(x_hat, x), atol=1e-6)
    extra.sum().backward()
    assert float(x_hat.grad.abs().sum()) > 0


def test_a_diverged_search_keeps_the_plain_stream(lpips_mod):
    m = _with_refiner(tiny_model(), seed=1)
    plain, searching = Codec(m), Codec(m).set_search(2)
    inner = searching.search

    class Diverged:
        config, distortion = inner.config, inner.distortion

        def __call__(self, x, ys, quality, extra_bits=0.0):
            return [ys[0]] + [torch.full_like(y, float("nan")) for y in ys[1:]]

    searching.search = Diverged()
    face = faces(1)[0]
    assert searching.compress(face, quality=2, aligned=True) == plain.compress(face, quality=2, aligned=True)
    budget = 8 * (len(plain.compress(face, quality=3, aligned=True)) + 2) / 32 ** 2
    assert searching.compress(face, bpp=budget, aligned=True) == plain.compress(face, bpp=budget, aligned=True)
