"""Code one aligned face with stylecodec (every layer prefix x quality, rate targets) and with
the anchors; return result rows (without metrics) and the decoded images."""
from __future__ import annotations

import time

import numpy as np
import torch

from ..anchors import AnchorError
from ..bitstream import extract
from ..rate import choose_quality, stream_sizes
from ..errors import StylecodecError
from ..layers import LAYER_NAMES
from .settings import setting_name

__all__ = ["STYLE_CODECS", "face_latents", "style_keys", "target_setting", "parse_target", "code_stylecodec",
           "targets_from_sweep", "code_anchor", "head_landmarks", "error_row"]

# curve name of each layer prefix: basic, basic + middle, all three
STYLE_CODECS = ("stylecodec-basic", "stylecodec-middle", "stylecodec-all")


def target_setting(bpp: float | None, basic_bpp: float | None = None) -> str:
    """Setting name of a per-image rate budget: 'bpp<=0.01', 'bpp<=0.01+basic<=0.003' or 'basic<=0.003'."""
    return "+".join(f"{k}<={b:g}" for k, b in (("bpp", bpp), ("basic", basic_bpp)) if b is not None)


def parse_target(setting: str) -> tuple[float | None, float | None] | None:
    """(bpp, basic_bpp) of a :func:`target_setting` name (None: no such budget); None for other settings."""
    parts = dict(p.split("<=", 1) for p in setting.split("+") if "<=" in p)
    if not parts or set(parts) - {"bpp", "basic"} or "<=" not in setting.split("+")[0]:
        return None
    return tuple(float(parts[k]) if k in parts else None for k in ("bpp", "basic"))


def style_keys(qualities, targets, basic_bpp: float | None = None) -> list[tuple[str, str]]:
    """(codec, setting) of every stylecodec row of one image."""
    settings = [f"q{q}" for q in qualities] + [target_setting(b, basic_bpp) for b in targets]
    return [(c, s) for s in settings for c in STYLE_CODECS]


def _row(name, codec, setting, family, point, q, shape, nbytes, payload, enc_s, dec_s, layers=None) -> dict:
    h, w = shape
    return {"image": name, "codec": codec, "setting": setting, "family": family, "point": point, "layers": layers,
            "q": q, "width": w, "height": h, "bytes": nbytes, "bpp": 8.0 * nbytes / (w * h),
            "payload_bytes": payload, "bpp_payload": 8.0 * payload / (w * h), "encode_s": enc_s, "decode_s": dec_s,
            "error": ""}


def error_row(name, codec, setting, family, message) -> dict:
    return {"image": name, "codec": codec, "setting": setting, "family": family,
            "point": "target" if parse_target(setting) else "sweep", "error": message.replace("\n", " ")[:300]}


def face_latents(codec, face: np.ndarray):
    """Latents of an already aligned R x R x 3 uint8 face (the codec's ``align`` is not run again)."""
    x = torch.from_numpy(np.ascontiguousarray(face, np.float32)).permute(2, 0, 1)[None] / 127.5 - 1.0
    return codec.encode_latents(x.to(codec.device))


def code_stylecodec(codec, face: np.ndarray, name: str, qualities, targets, pending: set,
                    basic_bpp: float | None = None) -> list[tuple]:
    """Rows for the pending (codec, setting) pairs of the aligned face (R x R x 3 uint8, what the
    anchors code too): (row, decoded R x R x 3 uint8, stream of that prefix). Rate targets (with the
    optional ``basic_bpp`` budget on the basic layer alone) take the highest quality that fits, else
    the lowest (the row then shows the miss). Encoder time = analysis (E + transforms, alignment
    excluded as for the anchors) + entropy coding at that quality."""
    todo = [k for k in style_keys(qualities, targets, basic_bpp) if k in pending]
    if not todo:
        return []
    r = codec.resolution
    t0 = time.perf_counter()
    ys = face_latents(codec, face)
    t_analyse = time.perf_counter() - t0
    streams: dict[int, tuple[bytes, float]] = {}

    def stream(q: int) -> tuple[bytes, float]:
        if q not in streams:
            t = time.perf_counter()
            data = codec.compress_latents(ys, q)[0]
            streams[q] = (data, t_analyse + time.perf_counter() - t)
        return streams[q]

    chosen = {}
    for b in targets:                      # highest quality that fits the budgets; else the lowest
        chosen[target_setting(b, basic_bpp)] = choose_quality(codec.quality_range,
                                                              lambda q: stream_sizes(stream(q)[0]), r, b, basic_bpp)[0]
    decoded: dict[tuple[int, int], tuple[np.ndarray, float, bytes]] = {}
    out = []
    for c, setting in todo:
        k = STYLE_CODECS.index(c) + 1
        q = chosen[setting] if setting in chosen else int(setting[1:])
        data, enc_s = stream(q)
        if (q, k) not in decoded:
            part = data if k == len(LAYER_NAMES) else extract(data, k)
            t = time.perf_counter()
            arr = codec.decompress(part, k, output="array")
            decoded[(q, k)] = (arr, time.perf_counter() - t, part)
        arr, dec_s, part = decoded[(q, k)]
        row = _row(name, c, setting, "stylecodec", "target" if setting in chosen else "sweep", q, (r, r),
                   len(part), len(part), enc_s, dec_s, layers=k)
        out.append((row, arr, part))
    return out


def targets_from_sweep(rows: list[dict], qualities: range, resolution: int, targets, basic_bpp: float | None,
                       pending: set) -> list[tuple[dict, str]]:
    """Rate-target rows of one image derived from its finished quality-sweep rows, without coding
    again: with the sweep rows of every quality for stylecodec-basic and -all, their bytes are the
    basic layer as extracted and the whole file, so the quality :func:`code_stylecodec` would
    choose is known, and that quality's rows (same stream, same decoded image: coding is
    deterministic) are the target's rows. Returns (row copy, source setting) for the pending
    target keys it can fill; [] when a sweep row is missing or failed."""
    sweep = {(r["codec"], r["setting"]): r for r in rows if not r["error"]}
    need = [(c, f"q{q}") for c in (STYLE_CODECS[0], STYLE_CODECS[2]) for q in qualities]
    if any(k not in sweep for k in need):
        return []

    def sizes(q: int) -> tuple[int, int]:            # (whole file, basic layer alone): the all and basic rows
        return sweep[(STYLE_CODECS[2], f"q{q}")]["bytes"], sweep[(STYLE_CODECS[0], f"q{q}")]["bytes"]

    out = []
    for b in targets:
        setting = target_setting(b, basic_bpp)
        q = choose_quality(qualities, sizes, resolution, b, basic_bpp)[0]
        for c in STYLE_CODECS:
            src = sweep.get((c, f"q{q}"))
            if (c, setting) in pending and src is not None:
                out.append(({**src, "setting": setting, "point": "target"}, f"q{q}"))
    return out


def code_anchor(spec, anchor, ref: np.ndarray, name: str, pending: set) -> list[tuple[dict, np.ndarray | None]]:
    """Rows of one anchor curve for the pending settings; failures become error rows."""
    out = []
    for q in spec.qs:
        setting = setting_name(anchor.quality_name, q)
        if (spec.codec, setting) not in pending:
            continue
        try:
            enc, rec = anchor.roundtrip(ref, q)
        except AnchorError as e:
            out.append((error_row(name, spec.codec, setting, spec.name, f"{type(e).__name__}: {e}"), None))
            continue
        row = _row(name, spec.codec, setting, spec.name, "sweep", q, enc.shape, enc.nbytes, enc.payload_bytes,
                   enc.meta.get("encode_s"), enc.meta.get("decode_s"))
        out.append((row, rec))
    return out


def head_landmarks(codec, basic_stream: bytes):
    """68 landmarks (pixels of the R x R face) from the base-layer head via ``Codec.analyze``, when
    the codec has that method and the model has heads; else None. Raises StylecodecError when
    the method exists but its result has no landmarks."""
    analyze = getattr(codec, "analyze", None)
    if analyze is None:
        return None
    res = analyze(basic_stream)
    pts = res.get("landmarks") if isinstance(res, dict) else getattr(res, "landmarks", None)
    if pts is None:
        return None
    if hasattr(pts, "detach"):
        pts = pts.detach().cpu().numpy()
    pts = np.asarray(pts, np.float64)
    if pts.size != 136:
        raise StylecodecError(f"Codec.analyze returned landmarks of shape {pts.shape}, expected 68 x 2")
    return pts.reshape(68, 2)
