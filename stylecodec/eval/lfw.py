"""LFW 10-fold verification on decoded base-layer faces (SFace judge, never a training network).

One image of each pair (``image_a``) is replaced by its decoded version; the other stays the
original LFW crop. Entries: the original images; the aligned R x R face without coding (the
effect of alignment/resizing alone); stylecodec's basic layer alone (the machine stream:
header + basic layer) at a quality or a per-image rate target; VVC at its floor (QP 63) on the
same aligned face. LFW faces are aligned with ``stylecodec.align.align`` when that function
exists, else resized (centre square, Lanczos); the report names which.
``n_pairs`` takes the first n/20 same and n/20 different pairs of each of the 10 folds.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np

from .coding import face_latents, fit_quality
from .common import read_json, write_json

__all__ = ["limit_pairs", "lfw_align", "run_lfw"]


def limit_pairs(pairs: list, n: int | None) -> list:
    """About ``n`` pairs, balanced over folds and same/different, in csv order."""
    if not n or n >= len(pairs):
        return list(pairs)
    folds = sorted({p.fold for p in pairs})
    k = max(1, math.ceil(n / (2 * len(folds))))
    out = []
    for f in folds:
        for same in (True, False):
            out += [p for p in pairs if p.fold == f and p.same == same][:k]
    return out


def lfw_align():
    """(align(PIL image, size) -> PIL image, description): stylecodec.align's FaceAligner("on")
    when that module exists (faces it cannot find fall back to resizing, counted), else resizing."""
    from ..codec import centre_square

    try:
        from ..align import FaceAligner
    except ImportError:
        return centre_square, "resize (centre square, Lanczos): stylecodec.align is not available"
    return FaceAligner("on"), "stylecodec.align.FaceAligner('on') (5-point similarity alignment to the UTKFace layout)"


_EMB_CACHE: dict[tuple, np.ndarray] = {}


def _embed(images) -> np.ndarray:
    """SFace embeddings, one image at a time (sizes differ); identical images are embedded once."""
    import warnings

    from ..metrics.identity import embed

    out = []
    for im in images:
        im = np.ascontiguousarray(im)
        key = (im.shape, hash(im.tobytes()))
        if key not in _EMB_CACHE:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _EMB_CACHE[key] = embed(im[None], "sface")[0]
        out.append(_EMB_CACHE[key])
    return np.stack(out)


def run_lfw(codec, out_dir: str | os.PathLike, pairs_csv: str | os.PathLike | None = None, n_pairs: int | None = None,
            quality: int | None = None, bpp: float | None = None, vvc_qp: int = 63, progress: bool = True) -> dict:
    """Run (or reuse) the verification and write ``out_dir/lfw.json``; returns its content."""
    from PIL import Image

    from ..anchors import get_anchor
    from ..bitstream import extract
    from ..metrics.verification import default_pairs_csv, lfw_verification, read_pairs

    csv_path = Path(pairs_csv) if pairs_csv else default_pairs_csv()
    pairs = limit_pairs(read_pairs(csv_path), n_pairs)
    align, align_name = lfw_align()
    r = codec.resolution
    q = quality if quality is not None else (None if bpp is not None else codec.quality_range[-1])
    config = {"pairs_csv": str(csv_path), "n_pairs": len(pairs), "fingerprint": f"0x{codec.fingerprint:04x}",
              "quality": q, "bpp_target": bpp, "align": align_name, "vvc_qp": vvc_qp}
    path = Path(out_dir) / "lfw.json"
    old = read_json(path)
    if old and old.get("config") == config:
        return old
    fallbacks: set[int] = set()

    cache: dict[int, np.ndarray] = {}

    def aligned(img: np.ndarray) -> np.ndarray:
        key = hash(img.tobytes())
        if key not in cache:
            cache[key] = _align_one(img)
        return cache[key]

    def _align_one(img: np.ndarray) -> np.ndarray:
        pil = Image.fromarray(img)
        try:
            out = align(pil, r)
        except Exception:  # noqa: BLE001  no face found by the aligner: resize instead, counted
            from ..codec import centre_square
            fallbacks.add(hash(img.tobytes()))
            out = centre_square(pil, r)
        return np.asarray(out.convert("RGB"), np.uint8)

    sizes: dict[str, list[tuple[int, int]]] = {"stylecodec-basic": [], "vvc": []}
    misses = [0]

    def style(img: np.ndarray) -> np.ndarray:
        ys = face_latents(codec, aligned(img))
        streams = {}

        def stream(quality: int) -> bytes:
            if quality not in streams:
                streams[quality] = codec.compress_latents(ys, quality)[0]
            return streams[quality]

        qq, met = (q, True) if q is not None else fit_quality(codec, stream, bpp)
        misses[0] += not met
        data = stream(qq)
        basic = extract(data, 1)
        sizes["stylecodec-basic"].append((len(basic), len(data)))
        return codec.decompress(basic, 1, output="array")

    vvc = get_anchor("vvc")

    def vvc_floor(img: np.ndarray) -> np.ndarray:
        enc, rec = vvc.roundtrip(aligned(img), vvc_qp)
        sizes["vvc"].append((enc.nbytes, enc.payload_bytes))
        return rec

    runs = [("original", "-", None), ("aligned", f"{r}x{r}, no coding", aligned),
            ("stylecodec-basic", f"q{q}" if q is not None else f"bpp<={bpp:g}", style),
            ("vvc", f"qp{vvc_qp}", vvc_floor)]
    entries = []
    for codec_name, setting, fn in runs:
        res = lfw_verification(_embed, pairs, csv_path.parent / "lfw", transform_a=fn, batch_size=32, progress=progress)
        e = {"codec": codec_name, "setting": setting, "accuracy": res.mean, "std": res.std, "bpp": None}
        if sizes.get(codec_name):
            s = np.array(sizes[codec_name], np.float64)
            e.update(bytes=float(s[:, 0].mean()), bpp=float(8 * s[:, 0].mean() / r ** 2),
                     bpp_other=float(8 * s[:, 1].mean() / r ** 2))
        entries.append(e)
    result = {"config": config, "n_pairs": len(pairs), "judge": "SFace", "align": align_name,
              "align_fallbacks": len(fallbacks), "target_misses": misses[0], "entries": entries,
              "note": ("bpp of stylecodec-basic: the header + basic layer stream (bpp_other: the whole file); "
                       "of vvc: the whole stream (bpp_other: slice data only)")}
    write_json(path, result)
    return result
