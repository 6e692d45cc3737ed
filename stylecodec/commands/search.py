"""``stylecodec search PROBE [PROBE...] --index INDEX [--top K] [--threshold T] [--json]``.

PROBE: a ``.sfc`` stream (its basic layer is read) or a face image (aligned, compressed at the
model's default rate, and its basic layer read: the same path as the indexed faces). Prints the
top-K entries by cosine of the identity embeddings; ``--threshold T`` adds a verification
decision per probe (match when the best score >= T). ``--info``: the index's summary and the
files it skipped, no probe. An index written by another model is refused.
"""
from __future__ import annotations

import argparse
import json

from ..search.backend import BACKENDS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("probe", nargs="*", metavar="PROBE", help="face image or .sfc stream")
    parser.add_argument("--index", required=True, metavar="INDEX", help="index file (stylecodec index)")
    parser.add_argument("--top", type=int, default=5, metavar="K", help="matches per probe (default 5)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="verification: 'match' when the best cosine is >= T (the threshold depends on the model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="nearest-neighbour search: faiss (exact IndexFlatIP), numpy, or auto (faiss for large "
                             "indexes when installed)")
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="faiss threads (default 1: one probe is a memory-bound scan; more help on idle cores)")
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--align", choices=("auto", "on", "off"), default="auto",
                        help="image probes, as `stylecodec index --align` (default auto: a face already sitting like a "
                             "UTKFace crop is coded as it is, others aligned); auto and on: a probe without a face is "
                             "an error; off: the centre square")
    parser.add_argument("--info", action="store_true", help="print the index summary and skipped files; no search")


def _probe_aligner(mode: str):
    """The compress hook for image probes: ``FaceAligner(mode)``, except that a probe without a face is
    an error in mode auto too (auto codes such an image's centre square, which matches nothing)."""
    from ..align import FaceAligner, NoFaceError
    from ..images import centre_square

    if mode == "off":
        return centre_square

    class ProbeAligner(FaceAligner):
        def __call__(self, img, size):
            out = super().__call__(img, size)
            if self.last.startswith("centre square (no face"):
                w, h = img.size
                raise NoFaceError(f"no face found in the {w}x{h} probe image (MTCNN and dlib); "
                                  "use --align off to search with its centre square")
            return out
    return ProbeAligner(mode)


def _probe_stream(codec, path: str) -> bytes:
    from ..bitstream import read_basic_prefix

    if path.lower().endswith(".sfc"):
        return read_basic_prefix(path)
    return codec.compress(path)


def run(args: argparse.Namespace) -> int:
    from ..errors import StylecodecError
    from ..search.index import IdentityIndex

    index = IdentityIndex.load(args.index)                 # a damaged file fails before the model loads
    if args.info:
        return _info(index, args)
    if not args.probe:
        raise StylecodecError("give at least one PROBE (image or .sfc), or --info")
    if args.top < 1:
        raise StylecodecError(f"--top must be >= 1, got {args.top}")
    from ..codec import Codec

    codec = Codec.from_pretrained(args.model, device=args.device, align=_probe_aligner(args.align))
    try:
        index.check_codec(codec)
    except StylecodecError as e:
        raise type(e)(f"{args.index}: {e}") from None
    results = []
    for path in args.probe:
        stream = _probe_stream(codec, path)
        try:
            emb = codec.identity(stream)
        except StylecodecError as e:
            raise type(e)(f"probe {path}: {e}") from None
        hits = index.search(emb, args.top, backend=args.backend, threads=args.threads)[0]
        r = {"probe": path, "bytes_read": len(_basic(stream)),
             "top": [{"rank": i + 1, "name": h.name, "path": h.path, "score": round(h.score, 6)}
                     for i, h in enumerate(hits)]}
        if args.threshold is not None:
            r["threshold"] = args.threshold
            r["match"] = bool(hits) and hits[0].score >= args.threshold
        results.append(r)
    if args.json:
        print(json.dumps({"index": args.index, "entries": len(index), "backend": index.backend,
                          "model_fingerprint": f"0x{codec.fingerprint:04x}", "probes": results}))
        return 0
    for r in results:
        print(f"{r['probe']}: top {len(r['top'])} of {len(index):,} faces (basic layer: {r['bytes_read']} bytes read; "
              f"{index.backend} search)")
        for t in r["top"]:
            print(f"  {t['rank']:>3}  {t['score']:+.4f}  {t['path']}")
        if "match" in r:
            best = r["top"][0] if r["top"] else None
            verdict = (f"match: {best['path']} ({best['score']:.4f} >= {args.threshold:g})" if r["match"] else
                       f"no match (best {best['score']:.4f} < {args.threshold:g})" if best else "no match (empty index)")
            print(f"  verification: {verdict}")
    return 0


def _basic(stream: bytes) -> bytes:
    from ..bitstream import basic_prefix

    return basic_prefix(stream)


def _info(index, args) -> int:
    info = index.info()
    skipped = [{"path": (index.sources[s]["path"] + "/" if index.sources[s]["path"] else "") + n, "reason": r}
               for (s, n), r in sorted(index.skipped.items())]
    if args.json:
        print(json.dumps(info | {"skipped_files": skipped}))
        return 0
    print(f"{args.index}: {info['entries']:,} faces, {info['dim']}-d {info['dtype']} embeddings, model "
          f"{info['model_fingerprint']} (identity {info['identity_fingerprint']}), {info['skipped']} skipped")
    for s in info["sources"]:
        print(f"  source: {s}")
    for s in skipped:
        print(f"  skipped {s['path']}: {s['reason']}")
    return 0
