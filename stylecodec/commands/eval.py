"""``stylecodec eval --images DIR --out RUN_DIR [...]``: the comparison with VVC and the other anchors.

Codes every image with stylecodec (each layer prefix x each quality, and per-image rate
targets) and each anchor's sweep, measures, writes ``RUN_DIR/results.csv`` (resumable), runs
LFW verification when the LFW pairs are there, and writes the report (summary.md, plots,
index.html, tb/). With ``--shard k/N`` each machine writes its own results file and no report;
``stylecodec eval-merge`` (or ``stylecodec report``) combines them afterwards.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from ..batch import find_images, parse_shard, select_shard
from ..errors import StylecodecError
from ..eval.choices import DEFAULT_ANCHORS, EXTERNAL_ANCHOR_NAMES, LFW_ENTRIES, METRIC_GROUPS, lfw_entries
from ._rate import positive_float

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).


def add_eval_arguments(parser: argparse.ArgumentParser, images_required: bool = True) -> None:
    """The options shared by ``eval`` and ``demo``."""

    if images_required:
        parser.add_argument("--images", required=True, metavar="DIR", help="folder of face images (recursive)")
        parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run folder (created; re-runs resume)")
    parser.add_argument("--model", default="default", metavar="NAME|PATH" + ("|none" if images_required else ""),
                        help="codec model (default: default)" + ("; 'none' runs the anchors only" if images_required else ""))
    parser.add_argument("--anchors", default=",".join(DEFAULT_ANCHORS), metavar="LIST",
                        help=f"anchors to compare with (default: {','.join(DEFAULT_ANCHORS)}; also "
                             f"{', '.join(EXTERNAL_ANCHOR_NAMES)}; linear = eigenfaces, fitted once on the "
                             "training faces and cached, left out with a note where they are absent)")
    parser.add_argument("--qualities", default="all", metavar="all|LIST", help="stylecodec quality indices")
    parser.add_argument("--qps", action="append", metavar="SPEC",
                        help="anchor sweeps, e.g. 'vvc=37:63:2;jpeg=10,5,1' (a bare list is VVC's; repeatable)")
    parser.add_argument("--downscale", default="2,4", metavar="LIST|none",
                        help="also VVC after downscaling by these factors (default: 2,4)")
    parser.add_argument("--bpp-targets", default="", metavar="LIST",
                        help="stylecodec rows at per-image rate targets, e.g. 0.01")
    parser.add_argument("--basic-bpp", type=positive_float, metavar="B",
                        help="with rate targets: the basic layer alone must fit too, e.g. 0.003")
    if images_required:
        parser.add_argument("--limit", type=int, metavar="N", help="only the first N images (after --val-count)")
        parser.add_argument("--val-count", type=int, metavar="N",
                            help="only the last N images sorted by name (the held-out split, e.g. 1000 for UTKFace)")
        parser.add_argument("--shard", metavar="k/N", help="this machine's share: images with index %% N == k")
    parser.add_argument("--lfw", default="auto", metavar="auto|none|CSV",
                        help="LFW pairs csv for verification (auto: ../shared/data/lfw_pairs.csv if present)")
    parser.add_argument("--lfw-pairs", type=int, metavar="N",
                        help="about N LFW pairs, balanced over the folds (default: 20 per image asked for, at least "
                             "40, at most all 6000)")
    parser.add_argument("--thumbs", type=int, default=8, metavar="N", help="save thumbnails of the first N images")
    parser.add_argument("--skip-metrics", default="", metavar="LIST",
                        help=f"metric groups not to compute ({', '.join(METRIC_GROUPS)})")
    parser.add_argument("--headline-quality", type=int, metavar="Q", help="stylecodec quality of the headline")
    parser.add_argument("--align", choices=("off", "auto", "on"), default="auto",
                        help="face alignment before coding (as `stylecodec compress --align`; default auto)")
    if images_required:
        parser.add_argument("--resolution", type=int, default=256, help="face size with --model none (default 256)")
    parser.add_argument("--device", default="cpu", help="device for the networks (default: cpu)")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads")
    parser.add_argument("--retry-errors", action="store_true", help="redo rows that failed before")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    def entries(value: str) -> list[str]:
        try:
            return list(lfw_entries([e.strip() for e in value.split(",") if e.strip()]))
        except StylecodecError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    add_eval_arguments(parser)
    parser.add_argument("--lfw-entries", metavar="LIST", type=entries,
                        help=f"only these LFW entries ({','.join(LFW_ENTRIES)}; default all): fills their caches, "
                             "e.g. one process per entry on a many-core box; a run with all of them writes lfw.json")
    parser.add_argument("--no-report", action="store_true", help="only the results (no summary/plots/html)")


def config_from_args(args, images, out):
    from ..eval.harness import EvalConfig
    from ..eval.settings import parse_floats, parse_qps

    return EvalConfig(
        images=images, out=out, model=args.model,
        anchors=[a.strip() for a in args.anchors.split(",") if a.strip()] if args.anchors.lower() != "none" else [],
        qps=parse_qps(args.qps), downscale=parse_floats(args.downscale, "--downscale"), qualities=args.qualities,
        bpp_targets=parse_floats(args.bpp_targets, "--bpp-targets"), basic_bpp=args.basic_bpp, limit=getattr(args, "limit", None),
        val_count=getattr(args, "val_count", None), shard=parse_shard(getattr(args, "shard", None)), thumbs=args.thumbs,
        skip_metrics=tuple(s.strip() for s in args.skip_metrics.split(",") if s.strip()),
        resolution=getattr(args, "resolution", 256), align=args.align, device=args.device, threads=args.threads, retry_errors=args.retry_errors,
        progress=not args.quiet)


def lfw_csv(choice: str, shared: Path | None = None) -> Path | None:
    """The pairs csv for ``--lfw auto|none|PATH`` (auto: SHARED/data/lfw_pairs.csv when present)."""
    from ..metrics.verification import default_pairs_csv

    if choice == "none":
        return None
    if choice == "auto":
        p = (Path(shared) / "data" / "lfw_pairs.csv") if shared else default_pairs_csv()
        return p if p.is_file() else None
    if not Path(choice).is_file():
        raise StylecodecError(f"--lfw: pairs file {choice} does not exist")
    return Path(choice)


def evaluate(cfg, lfw: Path | None, lfw_pairs: int | None, headline_quality: int | None, report: bool = True,
             lfw_entries: list[str] | None = None):
    """Print the plan (what runs, the expected time), run the harness, LFW (unsharded runs or shard 0,
    with a model; ``lfw_pairs`` None: in proportion to the images, see stylecodec.eval.plan;
    ``lfw_entries``: only those), then the report. Returns (harness summary, summary.md path or None,
    headline markdown or None)."""
    from ..eval.common import read_json
    from ..eval.harness import load_codec, run_eval
    from ..eval.lfw import run_lfw
    from ..eval.plan import default_lfw_pairs, describe
    from ..eval.report import write_report
    from ..eval.results import load_rows
    from ..eval.tables import headline_quality as pick_quality, mean_table

    if cfg.codec is None:
        cfg.codec = load_codec(cfg.model, cfg.device, cfg.align)
    with_lfw = lfw is not None and cfg.codec is not None and (cfg.shard is None or cfg.shard[0] == 0)
    if with_lfw and lfw_pairs is None:
        lfw_pairs = default_lfw_pairs(len(select_shard(find_images(cfg.images, cfg.val_count, cfg.limit), cfg.shard)))
    print(describe(cfg, cfg.codec, lfw_pairs if with_lfw else None), flush=True)
    res = run_eval(cfg)
    codec = res["codec"]
    if with_lfw:
        q = None
        if not cfg.bpp_targets:
            info = read_json(Path(cfg.out) / "run.json", {}) or {}
            q = pick_quality(mean_table(load_rows(cfg.out)), info, 0.01, headline_quality)
        print(f"LFW verification: {lfw_pairs} pairs from {lfw}")
        out = run_lfw(codec, cfg.out, lfw, lfw_pairs, quality=q,
                      bpp=cfg.bpp_targets[0] if cfg.bpp_targets else None, progress=cfg.progress,
                      basic_bpp=cfg.basic_bpp if cfg.bpp_targets else None, entries=lfw_entries)
        if out.get("partial"):
            done = ", ".join(f"{e['codec']} {100 * e['accuracy']:.2f} %" for e in out["entries"])
            print(f"LFW entries done ({done}); lfw.json is written by a run with all entries")
    if not report or cfg.shard is not None:
        return res, None, None
    path, head = write_report(cfg.out, headline_quality)
    return res, path, head


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, args.images, args.out)
    res, path, head = evaluate(cfg, lfw_csv(args.lfw), args.lfw_pairs, args.headline_quality, not args.no_report,
                               args.lfw_entries)
    print(f"{res['images']} images, {res['rows_new']} new rows, {res['rows_total']} in {args.out}")
    if path is None:
        print(f"results: {res['results']} (report: stylecodec report {args.out}, or eval-merge for shards)")
        return 0
    print(f"report: {path}\n\n{head}")
    return 0
