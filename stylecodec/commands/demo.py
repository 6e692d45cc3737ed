"""``stylecodec demo``: the main job. Compresses the sample faces as ``stylecodec compress-dir``
does by default, within the model's rate budget (the default model: whole file <= 0.01 bpp,
basic layer alone <= 0.003 bpp; ``--bpp`` / ``--basic-bpp`` set others), compares with VVC and
the other anchors at that operating point, draws the face grid of the sample faces
(:mod:`stylecodec.eval.face_grid`: layer prefixes, linear prior, VVC), runs LFW verification on decoded
base-layer faces when ../shared is there (``--lfw-pairs``, 100 by default, keeps it to minutes on a CPU; all
6,000 pairs take hours), writes the report and prints its path and headline table.

Samples: the repository's ``samples/`` when it holds images, else ``--samples DIR``, else faces
rendered by the model's generator into ``RUN_DIR/samples`` (see :mod:`stylecodec.eval.samples`).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..batch import compress_dir
from ..errors import StylecodecError
from ..paths import shared_dir
from ..rate import budget_text
from .eval import add_eval_arguments, config_from_args, evaluate, lfw_csv

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="runs/demo", metavar="RUN_DIR", help="run folder (default: runs/demo)")
    parser.add_argument("--bpp", type=float, default=None, metavar="B",
                        help="whole-file rate target per face (default: the model's budget, else 0.01)")
    parser.add_argument("--samples", metavar="DIR", help="sample faces (default: the repository's samples/)")
    parser.add_argument("--shared", metavar="PATH", help="the shared folder with data/lfw_pairs.csv "
                                                          "(default: $STYLECODEC_SHARED or ../shared)")
    parser.add_argument("--skip-if-no-model", action="store_true",
                        help="exit 0 with a message when the model is not available (for scripts/main.sh)")
    parser.add_argument("--no-face-grid", action="store_true",
                        help="skip the face grid of the sample faces (prefixes, linear prior, VVC; SFace and LPIPS)")
    add_eval_arguments(parser, images_required=False)
    parser.set_defaults(lfw_pairs=100)


def _samples(args, codec, out: Path) -> tuple[Path, str]:
    from ..eval.samples import find_samples, generate_samples, repo_samples_dir

    folder = Path(args.samples) if args.samples else repo_samples_dir()
    found = find_samples(folder)
    if found:
        return folder, f"samples: {len(found)} images from {folder}"
    gen = out / "samples"
    paths = generate_samples(codec.model, gen, n=5)
    return gen, (f"samples: {folder} holds no images, so {len(paths)} faces were rendered by the model's own "
                 f"generator (psi 0.7) into {gen}; they flatter the codec compared with photographs")


def _face_grid(codec, folder: Path, out: Path, quiet: bool) -> str | None:
    """``face_grid.png`` + ``face_grid.json`` of the sample faces (the report shows them); a note when
    it cannot be made. Kept when the same weights already made it for the same faces."""
    import numpy as np

    from ..anchors import AnchorError, get_anchor
    from ..anchors.linear import LinearAnchor
    from ..eval.common import read_json, write_json
    from ..eval.face_grid import face_grid
    from ..eval.samples import find_samples
    from ..files import write_atomic
    from ..images import load_image

    paths = find_samples(folder)
    key = {"weights": codec.results_id, "faces": [p.name for p in paths]}
    old = read_json(out / "face_grid.json", {}) or {}
    if {k: old.get(k) for k in key} == key and (out / "face_grid.png").is_file():
        return None
    vvc, linear, note = get_anchor("vvc"), LinearAnchor(), None
    try:
        vvc.check_available()
    except AnchorError as e:
        return f"face grid not made: {e}"
    try:
        linear.check_available()
    except AnchorError as e:
        linear, note = None, f"face grid without the linear prior: {e}"
    faces = [(p.name, np.array(codec.align(load_image(p), codec.resolution).convert("RGB"))) for p in paths]
    grid, records = face_grid(codec, faces, vvc, linear, log=None if quiet else print)
    write_atomic(str(out / "face_grid.png"), lambda tmp: grid.save(tmp, format="PNG", optimize=True))
    write_json(out / "face_grid.json", {**key, "records": records})
    return note


def run(args: argparse.Namespace) -> int:
    from ..eval.common import read_json, write_json
    from ..eval.harness import load_codec
    from ..zoo import ModelNotFoundError

    try:
        codec = load_codec(args.model, args.device, args.align)
    except ModelNotFoundError as e:
        if not args.skip_if_no_model:
            raise
        print(f"stylecodec demo: skipped -- {e}")
        return 0
    if codec is None:
        raise StylecodecError("the demo needs a model (--model none is for stylecodec eval)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    folder, note = _samples(args, codec, out)
    print(note)
    default = args.bpp is None and args.basic_bpp is None     # the model's own budget, as `compress` does
    rate = {} if default else {"bpp": args.bpp, "basic_bpp": args.basic_bpp}
    c = compress_dir(codec, folder, out / "streams", progress=not args.quiet, **rate)
    if default:
        args.bpp, args.basic_bpp = codec.default_budget
    args.bpp = 0.01 if args.bpp is None else args.bpp          # the report's rate target
    over = f", {c['over_budget']} above it (lowest quality)" if c["over_budget"] else ""
    print(f"compressed {'within the model budget' if default else 'at'} ({budget_text(args.bpp, args.basic_bpp)}): "
          f"{c['ok']} new, {c['skipped']} already done{over}, {c['error']} could not meet the rate or failed "
          f"(see {c['manifest']})")
    grid_note = None if args.no_face_grid else _face_grid(codec, folder, out, args.quiet)
    info = read_json(out / "run.json", {}) or {}
    info["notes"] = list(dict.fromkeys([*info.get("notes", []), note, *([grid_note] if grid_note else [])]))
    write_json(out / "run.json", info)
    cfg = config_from_args(args, folder, out)
    cfg.codec = codec
    cfg.bpp_targets = list(dict.fromkeys([args.bpp, *cfg.bpp_targets]))
    lfw = lfw_csv(args.lfw, Path(args.shared) if args.shared else shared_dir())
    if lfw is not None:
        print(f"LFW: about {args.lfw_pairs} of the 6000 pairs, to keep the demo to minutes on a CPU "
              f"(--lfw-pairs N to change; --lfw none to skip)")
    res, path, head = evaluate(cfg, lfw, args.lfw_pairs, args.headline_quality)
    print(f"\nreport: {path}\nhtml:   {out / 'index.html'}\n\n{head}")
    return 0
