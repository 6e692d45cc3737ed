"""``stylecodec verify-lfw``: LFW 10-fold face verification with coded faces, and their bpp.

    stylecodec verify-lfw --layers basic|middle|enhanced[,...] [--judge sface|dlib|facenet|head] [--both]
                          [--model M] [--limit-pairs N] [--quality Q | --bpp B] [--basic-bpp B] [--json]

Pixel judges (sface, the independent judge of DESIGN.md §3; dlib, dlib's ResNet descriptor, which no
stylecodec model trains with -- the machine-first basic layer codes SFace's embedding, so decoded
faces of those models are judged by dlib; facenet, the refiner's training loss): the
first image of every pair is aligned (:func:`stylecodec.align.align`, the step ``compress
--align on`` uses; centre square where no face is found), compressed, cut to ``--layers``,
decoded and judged against the original second image; ``--both`` codes both images. Several
layer prefixes (``--layers basic,middle,enhanced``) share one alignment and one compression per
image and give one result each.
Judge ``head``: the identity head's embedding read from the basic layer of each image's
stream (no pixels), so every image is coded and only the basic layer is used.

Accuracy: mean ± std over the 10 folds (threshold chosen on the other 9). bpp: mean over the
coded images of 8 · (bytes of the stream cut to the layers used) / R². Without a rate option
each face is coded as ``stylecodec compress`` codes it (the model's rate budget).

Pixel judges keep every finished embedding in ``--cache DIR`` (default
``$STYLECODEC_CACHE/lfw``, one file per configuration: model, layers, rate, judge, --both,
pairs file), so a run that is interrupted resumes where it stopped and a repeated run is
quick. Face alignments are kept in ``$STYLECODEC_CACHE/align`` (by image content, shared with
``stylecodec eval``'s LFW entries), so a run with another model or rate does not detect the
faces again. ``--no-cache`` turns both off.
"""
from __future__ import annotations

import argparse
import json

from ..layers import LAYER_NAMES
from ..paths import cache_root
from ._rate import add_rate_arguments, add_search_argument, rate_kwargs

# Library imports sit inside run(): `stylecodec verify-lfw --help` and the other commands start
# without torch (CLI start-up; see stylecodec/commands/__init__.py).
JUDGES = ("sface", "dlib", "facenet", "head")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", type=_layer_list, default=None, metavar="L[,L...]",
                        help="layers decoded: basic, middle, enhanced or a comma list "
                             "(default: enhanced; basic for --judge head)")
    parser.add_argument("--judge", choices=JUDGES, default="sface",
                        help="sface (independent, default), facenet (the training loss) or head (basic-layer head)")
    parser.add_argument("--both", action="store_true", help="code both images of each pair, not only the first")
    parser.add_argument("--model", default="default", metavar="NAME|PATH", help="model name or checkpoint")
    parser.add_argument("--limit-pairs", type=int, default=None, metavar="N",
                        help="use N pairs (at least 4), balanced over folds and same/different")
    add_rate_arguments(parser)
    add_search_argument(parser)
    parser.add_argument("--pairs", default=None, metavar="CSV",
                        help="pairs csv (default: ../shared/data/lfw_pairs.csv; images in lfw/ beside it)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--cache", metavar="DIR", default=None,
                        help="resume cache of finished embeddings (default: $STYLECODEC_CACHE/lfw or "
                             "~/.cache/stylecodec/lfw; pixel judges only)")
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the resume cache")


def _layer_list(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in LAYER_NAMES]
    if not names or bad or len(set(names)) != len(names):
        raise argparse.ArgumentTypeError(f"expected one or more of {', '.join(LAYER_NAMES)} (comma-separated, "
                                         f"no repeats), got {text!r}")
    return names


def run(args: argparse.Namespace) -> int:
    from ..codec import Codec
    from ..eval.lfw import verify_lfw

    layer_list = args.layers or ["basic" if args.judge == "head" else "enhanced"]
    rate = rate_kwargs(args)
    codec = Codec.from_pretrained(args.model, device=args.device, search_steps=args.search_steps)
    cache = None if args.no_cache else (args.cache or cache_root() / "lfw")
    memo: dict = {}
    results = [verify_lfw(codec, layers, args.judge, args.both, args.limit_pairs, rate["quality"], rate["bpp"],
                          args.pairs, basic_bpp=rate["basic_bpp"], cache_dir=cache, memo=memo)
               for layers in layer_list]
    if args.json:
        print(json.dumps(results[0] if len(results) == 1 else results, indent=1))
        return 0
    for r in results:
        coded = "both images" if r["both"] else "first image"
        print(f"LFW verification, judge {r['judge']}, layers up to {r['layers']} ({coded} of each pair coded): "
              f"{100 * r['accuracy_mean']:.2f} ± {100 * r['accuracy_std']:.2f} % over {r['pairs']} pairs; "
              f"mean {r['mean_bpp']:.5f} bpp over {r['coded_images']} coded {r['resolution']}² faces"
              + (f"; {r['align_fallbacks']} without a detected face (centre square)" if r["align_fallbacks"] else "")
              + (f"; {r['over_budget']} above the rate budget (lowest quality)" if r["over_budget"] else ""))
    return 0
