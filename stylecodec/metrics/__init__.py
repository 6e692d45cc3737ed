"""Quality metrics for people and machines (DESIGN.md §3).

- :mod:`.image`: PSNR, MS-SSIM          - :mod:`.lpips`: LPIPS v0.1 (AlexNet, VGG)
- :mod:`.bd`: BD-rate / BD-metric        - :mod:`.frechet`: Fréchet distance "FD-<space>"
- :mod:`.nme`: landmark NME              - :mod:`.verification`: LFW 10-fold accuracy

Owns: the metric functions (distances and scores of arrays / tensors); the networks some of them
run (LPIPS, facenet, SFace, dlib) are :mod:`stylecodec.assets`'.
May import: ``stylecodec.errors``, ``paths``, ``files`` and ``assets``; never the codec, ``eval``
or ``train`` (they import it).

Names below are imported lazily, so ``import stylecodec.metrics`` stays cheap.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "psnr": "image", "ms_ssim": "image", "ms_ssim_scales": "image",
    "lpips_distance": "lpips", "lpips_uint8": "lpips",
    "bd_rate": "bd", "bd_metric": "bd",
    "frechet_distance": "frechet", "FrechetDistance": "frechet",
    "nme_per_image": "nme", "mean_nme": "nme",
    "lfw_verification": "verification", "VerificationResult": "verification",
    "read_pairs": "verification",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
