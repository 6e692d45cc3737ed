"""LFW closed-set identification from basic layers vs the teacher network on the original faces.

    python experiments/lfw_identification.py [--model default] [--people N] [--teachers facenet,sface]

Protocol (issue 18): every LFW person with >= 2 images; the first image by name is the probe,
the rest the gallery (stylecodec.search.identification.lfw_split). Each image is aligned as
``verify-lfw`` aligns it (stylecodec.align.align, 5 points, centre square where no face is
found; alignments cached in $STYLECODEC_CACHE/align) and:

  (a) basic layer: compressed at the model's default setting (``Codec.compress``'s default budget,
      the default model: file <= 0.01 bpp, basic layer <= 0.003 bpp), cut to the basic layer, and
      its identity read without pixels (``Codec.identity`` / stylecodec.search.identity); probes
      are searched in an IdentityIndex of the gallery (exact, cosine);
  (b) teacher: the teacher network (facenet CASIA-WebFace: what today's identity head regresses;
      sface: what the redesigned basic layer regresses) on the aligned ORIGINAL face.

Rank-k: the probe's identity among the gallery identities ordered by their best cosine
(identity_ranks). ``--people N`` takes N persons evenly spread over the name-sorted list (a
quick subset); without it, all. Streams and teacher embeddings are cached by configuration in
``--cache`` (default $STYLECODEC_CACHE/lfw_ident), saved atomically every minute, so an
interrupted run resumes and a rerun with another identity head reuses the streams.
Writes --out (JSON) and prints a table.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

SAVE_EVERY_S = 60.0


def _select_people(probes: list[str], gallery: list[str], n: int | None) -> tuple[list[str], list[str]]:
    from stylecodec.search.identification import lfw_person

    if n is None or n >= len(probes):
        return probes, gallery
    keep = {lfw_person(probes[i]) for i in np.unique(np.linspace(0, len(probes) - 1, n).round().astype(int))}
    return [p for p in probes if lfw_person(p) in keep], [g for g in gallery if lfw_person(g) in keep]


class _Cache:
    """name -> value, kept in an npz (``kind``: "streams" bytes or "emb" float32 rows)."""

    def __init__(self, path: Path | None, kind: str):
        self.path, self.kind, self.data, self.dirty = path, kind, {}, False
        if path is not None and path.is_file():
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                if kind == "streams":
                    blob, off = z["blob"].tobytes(), z["offsets"]
                    self.data = {n: blob[off[i]:off[i + 1]] for i, n in enumerate(names)}
                else:
                    self.data = dict(zip(names, z["emb"]))

    def save(self) -> None:
        from stylecodec.files import write_npz

        if self.path is None or not self.dirty:
            return
        names = sorted(self.data)
        arrays = {"names": np.array(names)}
        if self.kind == "streams":
            vals = [self.data[n] for n in names]
            arrays["offsets"] = np.r_[0, np.cumsum([len(v) for v in vals])].astype(np.int64)
            arrays["blob"] = np.frombuffer(b"".join(vals), np.uint8)
        else:
            arrays["emb"] = np.stack([self.data[n] for n in names]).astype(np.float32)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_npz(self.path, arrays)
        self.dirty = False


def _tag(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--lfw", type=Path, default=None, help="LFW image folder (default: ../shared/data/lfw)")
    ap.add_argument("--people", type=int, default=None, metavar="N", help="N persons spread over the list (subset)")
    ap.add_argument("--teachers", default="facenet,sface", help="comma list of facenet, sface ('' for none)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cache", type=Path, default=None, help="resume cache folder ('none' to disable)")
    ap.add_argument("--out", type=Path, default=None,
                    help="result JSON (default experiments/results/search/lfw_identification[_peopleN].json)")
    args = ap.parse_args(argv)

    import torch
    from PIL import Image
    from tqdm import tqdm

    from stylecodec.codec import Codec
    from stylecodec.eval.lfw import ALIGN_NAME, CodedFaces
    from stylecodec.metrics.identity import embed
    from stylecodec.paths import cache_root, shared_dir
    from stylecodec.search.identification import identity_ranks, lfw_person, lfw_split, rank_accuracy
    from stylecodec.search.identity import identity_batch, identity_fingerprint
    from stylecodec.search.index import IdentityIndex

    torch.set_num_threads(args.threads)
    lfw = args.lfw or shared_dir() / "data" / "lfw"
    if not lfw.is_dir():
        print(f"LFW folder {lfw} is absent (set --lfw or STYLECODEC_SHARED)", file=sys.stderr)
        return 1
    probes, gallery = _select_people(*lfw_split([p.name for p in lfw.glob("*.jpg")]), args.people)
    names = probes + gallery
    teachers = [t for t in args.teachers.split(",") if t]
    codec = Codec.from_pretrained(args.model)
    budget = codec.default_budget
    cache_dir = (cache_root() / "lfw_ident" if args.cache is None else
                 None if str(args.cache).lower() == "none" else args.cache)
    stream_cfg = {"fingerprint": codec.fingerprint, "budget": budget, "align": ALIGN_NAME, "res": codec.resolution}
    streams = _Cache(cache_dir and cache_dir / f"streams-{codec.fingerprint:04x}-{_tag(stream_cfg)}.npz", "streams")
    teach = {t: _Cache(cache_dir and cache_dir / f"teacher-{t}-{_tag({'align': ALIGN_NAME, 'res': codec.resolution})}.npz",
                       "emb") for t in teachers}
    coder = CodedFaces(codec, 1, None, None, align_cache=cache_root() / "align")
    todo = [n for n in names if n not in streams.data or any(n not in c.data for c in teach.values())]
    print(f"{len(probes)} persons (probes), {len(gallery)} gallery images; {len(names) - len(todo)} cached, "
          f"{len(todo)} to align/code/embed; model 0x{codec.fingerprint:04x}, default budget {budget}", flush=True)
    t0, last = time.perf_counter(), time.monotonic()
    try:
        for n in tqdm(todo, desc="lfw", unit="img", disable=not sys.stderr.isatty()):
            img = np.asarray(Image.open(lfw / n).convert("RGB"))
            if n not in streams.data:
                streams.data[n], streams.dirty = coder.stream(img), True
            for t, c in teach.items():
                if n not in c.data:
                    c.data[n], c.dirty = embed(coder.aligned(img)[None], judge=t)[0], True
            if time.monotonic() - last > SAVE_EVERY_S:
                for c in (streams, *teach.values()):
                    c.save()
                last = time.monotonic()
    finally:
        for c in (streams, *teach.values()):
            c.save()
        coder.save()
    prep_s = time.perf_counter() - t0

    t1 = time.perf_counter()
    res = identity_batch(codec, [streams.data[n] for n in names])
    decode_s = time.perf_counter() - t1
    if res.errors:
        print(f"{len(res.errors)} streams could not be read: {next(iter(res.errors.values()))}", file=sys.stderr)
        return 1
    emb = dict(zip(names, res.embeddings))
    pid, gid = [lfw_person(n) for n in probes], [lfw_person(n) for n in gallery]
    index = IdentityIndex.for_codec(codec)
    index.add(gallery, np.stack([emb[n] for n in gallery]))
    top1 = [h[0].name for h in index.search(np.stack([emb[n] for n in probes]), 1)]
    rows = {}
    ranks = identity_ranks(np.stack([emb[n] for n in probes]), pid, index.embeddings, gid)
    assert ((ranks == 1) == np.array([lfw_person(t) == p for t, p in zip(top1, pid)])).all()
    basic_bytes = np.array([len(streams.data[n]) for n in names])
    rows["basic layer (no pixels)"] = rank_accuracy(ranks) | {
        "embedding": f"identity head, {res.embeddings.shape[1]}-d", "identity_fingerprint": identity_fingerprint(codec),
        "basic_bytes_mean": float(basic_bytes.mean()), "basic_bpp_mean": float(8 * basic_bytes.mean() / codec.resolution ** 2),
        "decode_s": decode_s}
    for t, c in teach.items():
        e = {n: c.data[n] / np.linalg.norm(c.data[n]) for n in names}
        r = identity_ranks(np.stack([e[n] for n in probes]), pid, np.stack([e[n] for n in gallery]), gid)
        rows[f"{t} on the aligned originals"] = rank_accuracy(r) | {"embedding": f"{t}, {len(e[names[0]])}-d"}
    chance = {"rank1": 1 / len(probes), "rank5": min(1.0, 5 / len(probes))}
    out = {"protocol": "LFW closed-set identification: every person with >= 2 images, first image by name = probe, "
                       "rest = gallery; rank over gallery identities by best cosine",
           "persons": len(probes), "gallery_images": len(gallery), "subset": args.people, "lfw": str(lfw),
           "model": args.model, "fingerprint": f"0x{codec.fingerprint:04x}", "default_budget": budget,
           "align": ALIGN_NAME, "align_fallbacks_this_run": coder.fallbacks, "results": rows, "chance": chance,
           "prep_wall_s": prep_s, "threads": args.threads, "cpu": platform.processor() or platform.machine(),
           "command": "python experiments/lfw_identification.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    path = args.out or Path("experiments/results/search") / (
        "lfw_identification.json" if args.people is None else f"lfw_identification_people{args.people}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"\nLFW closed-set identification, {len(probes)} persons, {len(gallery)} gallery images "
          f"(chance: rank-1 {100 * chance['rank1']:.2f} %, rank-5 {100 * chance['rank5']:.2f} %)")
    print(f"{'embedding':56s} {'rank-1':>8s} {'rank-5':>8s}")
    for k, v in rows.items():
        print(f"{k + ' (' + v['embedding'] + ')':56s} {100 * v['rank1']:7.2f}% {100 * v['rank5']:7.2f}%")
    print(f"basic layer: {basic_bytes.mean():.1f} B mean ({rows['basic layer (no pixels)']['basic_bpp_mean']:.5f} bpp); "
          f"{len(names)} basic layers decoded in {decode_s:.2f} s; wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
