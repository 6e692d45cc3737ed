"""Evaluation harness, report, compress-dir and demo on a tiny RANDOM model (64², never shipped)
with three synthetic 64x64 face-like images, JPEG + VVC anchors at two settings each."""
from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from stylecodec.bitstream import HEADER_BYTES
from stylecodec.cli import main
from stylecodec.batch import select_shard
from stylecodec.eval.html import check_index
from stylecodec.eval.choices import METRIC_GROUPS
from stylecodec.errors import StylecodecError
from stylecodec.eval.results import read_rows
from stylecodec.model import StyleCodecModel, tiny_config
from stylecodec.zoo import save_model

FAST = ["--align", "off", "--quiet", "--threads", "1", "--lfw", "none"]
METRIC_COLS = ["psnr", "ms_ssim", "lpips_alex", "lpips_vgg", "id_facenet", "id_sface", "dist_dlib", "nme_dlib"]
GROUP = {col: group for group, cols in METRIC_GROUPS.items() for col in cols}


def _face(seed: int) -> Image.Image:
    rng = np.random.RandomState(seed)
    img = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.randint(60, 200, 3)))
    d = ImageDraw.Draw(img)
    d.ellipse((14, 8, 50, 58), fill=(224, 180, 150))
    for x in (22, 36):
        d.ellipse((x, 24, x + 6, 30), fill=(40, 30, 30))
    d.line((26, 46, 38, 46), fill=(150, 60, 60), width=2)
    arr = np.asarray(img, np.float32) + rng.randn(64, 64, 3) * 6
    return Image.fromarray(arr.clip(0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(StyleCodecModel(tiny_config()), path, {"note": "random weights, mechanics tests only"})
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("faces")
    for i in range(3):
        _face(i).save(d / f"face{i}.png")
    return d


def _eval(model_file, images, out, *extra):
    t0 = time.perf_counter()
    assert main(["eval", "--images", str(images), "--out", str(out), "--model", str(model_file), *FAST, *extra]) == 0
    return time.perf_counter() - t0


MAIN = ["--anchors", "jpeg,vvc", "--qps", "vvc=51,63;jpeg=10,1;vvc_down2=63", "--downscale", "2",
        "--qualities", "0,5", "--bpp-targets", "0.05"]


@pytest.fixture(scope="module")
def run1(model_file, images, tmp_path_factory):
    out = tmp_path_factory.mktemp("run1")
    return out, _eval(model_file, images, out, *MAIN)


def test_results_rows(run1):
    out, _ = run1
    rows = read_rows(out / "results.csv")
    unavailable = json.loads((out / "run.json").read_text())["unavailable_metrics"]
    # per image: 3 prefixes x (2 qualities + 1 target) + jpeg 2 + vvc 2 + vvc_down2 1
    assert len(rows) == 3 * 14 and len({(r["image"], r["codec"], r["setting"]) for r in rows}) == 42
    assert not any(r["error"] for r in rows)
    for r in rows:
        assert r["bpp"] == pytest.approx(8 * r["bytes"] / 4096, rel=1e-5)
        assert r["width"] == r["height"] == 64 and r["encode_s"] >= 0 and r["decode_s"] >= 0
        for c in METRIC_COLS:
            assert math.isfinite(r[c]) or GROUP[c] in unavailable, (c, r)
    by = {(r["image"], r["codec"], r["setting"]): r for r in rows}
    for img in ("face0.png", "face1.png", "face2.png"):
        assert by[(img, "stylecodec-basic", "q5")]["bytes"] < by[(img, "stylecodec-all", "q5")]["bytes"]
        assert by[(img, "stylecodec-all", "bpp<=0.05")]["bpp"] <= 0.05
        vvc = by[(img, "vvc", "qp63")]
        assert vvc["payload_bytes"] < vvc["bytes"] and vvc["bpp_payload"] < vvc["bpp"]
        assert by[(img, "vvc_down2", "qp63")]["family"] == "vvc"


def test_resume_adds_nothing_then_fills_gaps(run1, model_file, images, capsys):
    out, t1 = run1
    before = (out / "results.csv").read_text()
    t2 = _eval(model_file, images, out, *MAIN, "--no-report")
    assert "0 new rows" in capsys.readouterr().out
    assert (out / "results.csv").read_text() == before and t2 < t1
    rows = read_rows(out / "results.csv")
    from stylecodec.eval.results import write_rows
    write_rows(out / "results.csv", [r for r in rows if not (r["image"] == "face1.png" and r["codec"] == "jpeg")])
    _eval(model_file, images, out, *MAIN, "--no-report")
    assert "2 new rows, 42 in" in capsys.readouterr().out


def test_shards_are_disjoint_and_complete(model_file, images, tmp_path, capsys):
    for n in (1, 2, 3, 5):
        parts = [[i for i, _ in select_shard(list("abcdefg"), (k, n))] for k in range(n)]
        assert sorted(sum(parts, [])) == list(range(7))
    cheap = ["--anchors", "jpeg", "--qps", "jpeg=10", "--qualities", "0", "--skip-metrics",
             "ms_ssim,lpips_vgg,facenet,sface,dlib"]
    for k in (0, 1):
        _eval(model_file, images, tmp_path / "b", *cheap, "--shard", f"{k}/2")
    shard_images = [{r["image"] for r in read_rows(tmp_path / "b" / f"results.shard-{k}-of-2.csv")} for k in (0, 1)]
    assert shard_images == [{"face0.png", "face2.png"}, {"face1.png"}]
    assert not (tmp_path / "b" / "summary.md").exists()
    assert main(["eval-merge", str(tmp_path / "b"), "--out", str(tmp_path / "m")]) == 0
    merged = read_rows(tmp_path / "m" / "results.csv")
    assert len(merged) == 3 * 4 and {r["image"] for r in merged} == {"face0.png", "face1.png", "face2.png"}
    assert (tmp_path / "m" / "summary.md").is_file()


def test_basic_layer_budget_rows_and_headline(model_file, images, tmp_path, capsys):
    """--basic-bpp: each target row takes the highest quality whose whole file and basic layer
    alone both fit; the basic row's `met` counts the basic budget; the headline says so."""
    from stylecodec.bitstream import extract
    from stylecodec.codec import Codec
    from stylecodec.eval.coding import parse_target, target_setting
    from stylecodec.eval.tables import mean_table

    assert parse_target(target_setting(0.06, 0.035)) == (0.06, 0.035) and parse_target("q5") is None
    out = tmp_path / "basic"
    cheap = ["--anchors", "jpeg", "--qps", "jpeg=10", "--downscale", "none", "--qualities", "0",
             "--skip-metrics", "ms_ssim,lpips_vgg,facenet,sface,dlib"]
    assert main(["eval", "--images", str(images), "--out", str(out), "--model", str(model_file), *FAST,
                 "--basic-bpp", "0.035"]) == 1
    assert "give --bpp-targets too" in capsys.readouterr().err
    _eval(model_file, images, out, *cheap, "--bpp-targets", "0.06", "--basic-bpp", "0.035")
    setting = "bpp<=0.06+basic<=0.035"
    rows = {(r["image"], r["codec"]): r for r in read_rows(out / "results.csv") if r["setting"] == setting}
    assert len(rows) == 3 * 3
    codec = Codec.from_pretrained(model_file)
    for i in range(3):
        name = f"face{i}.png"
        ys = codec.encode_latents(codec.preprocess(Image.open(images / name)))
        streams = [codec.compress_latents(ys, q)[0] for q in codec.quality_range]
        fit = [q for q, st in enumerate(streams) if 8 * len(st) <= 0.06 * 4096 and 8 * len(extract(st, 1)) <= 0.035 * 4096]
        q = max(fit) if fit else 0
        assert rows[(name, "stylecodec-basic")]["q"] == rows[(name, "stylecodec-all")]["q"] == q
        assert rows[(name, "stylecodec-basic")]["bytes"] == len(extract(streams[q], 1))
    table = {(e["codec"], e["setting"]): e for e in mean_table(list(rows.values()))}
    basic = [rows[(f"face{i}.png", "stylecodec-basic")]["bpp"] <= 0.035 for i in range(3)]
    assert table[("stylecodec-basic", setting)]["met"] == pytest.approx(np.mean(basic))
    md = (out / "summary.md").read_text()
    assert "stylecodec basic (<= 0.06 bpp per image" in md and "basic layer <= 0.035 bpp, met by" in md
    _eval(model_file, images, out, *cheap)                 # a later run without targets keeps them in the report
    info = json.loads((out / "run.json").read_text())
    assert info["bpp_targets"] == [0.06] and info["basic_bpp"] == 0.035
    assert "basic layer <= 0.035 bpp, met by" in (out / "summary.md").read_text()


def test_report_summary_html_plots_tb(run1, monkeypatch):
    from stylecodec.eval import report

    out, _ = run1
    md = (out / "summary.md").read_text()
    for needle in ("## Headline", "stylecodec basic (<= 0.05 bpp", "stylecodec +middle", "stylecodec all",
                   "VVC floor (QP 63)", "VVC matched LPIPS-Alex", "## BD-rate / BD-metric vs VVC",
                   "Not computed: 3 images", "## LFW verification",
                   f"Not computed: 3 images (BD-rates need >= {report.BD_MIN_IMAGES}"):
        assert needle in md, needle

    def bd_rows(md: str) -> list[str]:
        return [ln for ln in md.splitlines() if ln.startswith("| stylecodec-") and "LPIPS-Alex" in ln]

    assert bd_rows(md) == []                                     # 3 faces: the points, no BD-rate
    monkeypatch.setattr(report, "BD_MIN_IMAGES", 3)
    report.write_report(out)
    bd = bd_rows((out / "summary.md").read_text())
    assert len(bd) == 3 and all(("%" in ln) or ("no overlap" in ln) or ("n/a" in ln) for ln in bd)
    problems, n_refs = check_index(out / "index.html")
    assert problems == [] and n_refs >= 3 * 5 + 1
    assert len(re.findall(r"<img [^>]*src='img/", (out / "index.html").read_text())) >= 3 * 5
    assert (out / "rd_lpips_alex.png").is_file() and any((out / "tb").glob("events.out.tfevents.*"))


def test_target_rows_from_a_finished_sweep_equal_coded_ones(model_file, images, tmp_path, monkeypatch):
    """A rerun that adds rate targets to a finished quality sweep takes the target rows from the
    sweep (no coding); they equal the rows of a run that coded the targets directly."""
    import stylecodec.eval.harness as harness

    cheap = ["--anchors", "none", "--downscale", "none", "--thumbs", "1",
             "--skip-metrics", "ms_ssim,lpips_vgg,facenet,dlib"]
    target = ["--bpp-targets", "0.06", "--basic-bpp", "0.035"]
    _eval(model_file, images, tmp_path / "direct", *cheap, *target, "--no-report")
    _eval(model_file, images, tmp_path / "later", *cheap, "--no-report")
    monkeypatch.setattr(harness, "code_stylecodec", lambda *a, **k: pytest.fail("coded again"))
    _eval(model_file, images, tmp_path / "later", *cheap, *target, "--no-report")
    setting = "bpp<=0.06+basic<=0.035"

    def targets(run):
        return {(r["image"], r["codec"]): r for r in read_rows(run / "results.csv") if r["setting"] == setting}

    direct, later = targets(tmp_path / "direct"), targets(tmp_path / "later")
    assert len(direct) == len(later) == 9
    for k, r in direct.items():
        for col in ("q", "bytes", "bpp", "layers", "point", "psnr", "lpips_alex", "id_sface", "nme_head"):
            a, b = later[k][col], r[col]
            assert (a == pytest.approx(b, rel=1e-6, abs=1e-9) or (a != a and b != b)) if isinstance(b, float) \
                else a == b, (k, col, a, b)
    from stylecodec.eval.harness import thumb_path
    assert thumb_path(tmp_path / "later", "face0.png", "stylecodec-all", setting).is_file()
    with np.load(next((tmp_path / "later" / "emb").glob("face0*.npz"))) as z:
        assert f"stylecodec-all|{setting}" in z["names"].tolist()


def test_merge_unites_embeddings_of_one_image_from_two_runs(model_file, images, tmp_path):
    skip = ["--skip-metrics", "ms_ssim,lpips_alex,lpips_vgg,facenet,dlib", "--no-report", "--downscale", "none"]
    _eval(model_file, images, tmp_path / "a", "--anchors", "jpeg", "--qps", "jpeg=10", "--qualities", "0",
          "--model", "none", "--resolution", "64", *skip)
    _eval(model_file, images, tmp_path / "b", "--anchors", "none", "--qualities", "0", *skip)
    assert main(["eval-merge", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "m"),
                 "--no-report"]) == 0
    with np.load(next((tmp_path / "m" / "emb").glob("face0*.npz"))) as z:
        names = set(z["names"].tolist())
        assert {"jpeg|quality10", "stylecodec-all|q0"} <= names and z["ref"].shape == (128,)


def test_report_check_finds_broken_pages(run1, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run1[0], out)
    assert main(["report", str(out), "--check"]) == 0 and "valid (tags balanced" in capsys.readouterr().out
    page = (out / "index.html").read_text()
    thumb = re.search(r"src='(img/[^']+)'", page).group(1)
    (out / thumb).unlink()
    (out / "index.html").write_text(page.replace("</table>", "", 1))
    problems, _ = check_index(out / "index.html")
    assert f"missing file {thumb}" in problems and any("never closed" in p or "closes" in p for p in problems)
    assert main(["report", str(out), "--check"]) == 1 and "problems" in capsys.readouterr().err


def test_headline_carries_lfw_accuracy_of_the_same_setting(run1, tmp_path):
    from stylecodec.eval.common import write_json
    from stylecodec.eval.report import write_report

    out = tmp_path / "run"
    shutil.copytree(run1[0], out)
    entries = [{"codec": "original", "setting": "-", "accuracy": 0.99, "std": 0.01, "bpp": None},
               {"codec": "aligned", "setting": "64x64, no coding", "accuracy": 0.97, "std": 0.01, "bpp": None},
               {"codec": "stylecodec-basic", "setting": "bpp<=0.05", "accuracy": 0.6123, "std": 0.1, "bpp": 0.03},
               {"codec": "vvc", "setting": "qp63", "accuracy": 0.5432, "std": 0.1, "bpp": 0.2}]
    write_json(out / "lfw.json", {"n_pairs": 40, "judge": "SFace", "align": "x", "entries": entries})
    _, head = write_report(out)
    rows = {ln.split(" | ")[0]: ln for ln in head.splitlines()}
    assert "LFW acc." in head.splitlines()[0]
    assert "0.6123" in rows["| stylecodec basic (<= 0.05 bpp per image, met by 100% of files)"]
    assert "0.5432" in rows["| VVC floor (QP 63)"]
    assert "0.6123" not in rows["| stylecodec all (<= 0.05 bpp per image, met by 100% of files)"]
    md = (out / "summary.md").read_text()
    assert "on 40 LFW pairs" in md and "give 0.99 with both originals" in md
    assert "<th>LFW acc.</th>" in (out / "index.html").read_text()
    # measured at another setting: no column, a pointer instead
    entries[2]["setting"] = "q3"
    entries[3]["setting"] = "qp51"
    write_json(out / "lfw.json", {"n_pairs": 40, "judge": "SFace", "align": "x", "entries": entries})
    _, head = write_report(out)
    assert "LFW acc." not in head and "measured at other settings" in (out / "summary.md").read_text()


def test_compress_dir_manifest_skip_and_errors(model_file, images, tmp_path, capsys, monkeypatch):
    src = tmp_path / "in"
    (src / "sub").mkdir(parents=True)
    for f in ("face0.png", "face1.png"):
        (src / f).write_bytes((images / f).read_bytes())
    (src / "sub" / "face2.png").write_bytes((images / "face2.png").read_bytes())
    (src / "bad.jpg").write_bytes(b"this is not an image")
    out = tmp_path / "out"
    args = ["compress-dir", str(src), str(out), "--model", str(model_file), "--quality", "2", "--align", "off",
            "--quiet"]
    assert main(args) == 0
    assert "3 compressed, 0 already done, 1 errors" in capsys.readouterr().out
    from stylecodec.batch import read_manifest
    m = read_manifest(out)
    assert m["bad.jpg"]["status"] == "error" and "ImageReadError" in m["bad.jpg"]["error"]
    ok = m["sub/face2.png"]
    assert ok["status"] == "ok" and ok["quality"] == 2 and sum(ok["layer_bytes"]) + HEADER_BYTES == ok["bytes"]
    assert (out / "sub" / "face2.png.sfc").stat().st_size == ok["bytes"]
    mtime = (out / "face0.png.sfc").stat().st_mtime_ns
    assert main(args) == 0
    assert "0 compressed, 3 already done, 1 errors" in capsys.readouterr().out
    assert (out / "face0.png.sfc").stat().st_mtime_ns == mtime
    # interrupted while writing the second file: no partial file, the rerun finishes the job
    import stylecodec.files as files
    real, calls = files.os.replace, []

    def flaky(a, b):
        calls.append(b)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(a, b)

    out2 = tmp_path / "out2"
    monkeypatch.setattr(files.os, "replace", flaky)
    assert main([args[0], str(src), str(out2), *args[3:]]) == 130
    monkeypatch.setattr(files.os, "replace", real)
    assert sorted(p.name for p in out2.rglob("*") if p.is_file()) == ["face0.png.sfc", "manifest.jsonl"]
    assert main([args[0], str(src), str(out2), *args[3:], "--shard", "0/1"]) == 0
    assert "2 compressed, 1 already done, 1 errors" in capsys.readouterr().out


def test_demo_end_to_end(model_file, images, tmp_path, capsys):
    samples = tmp_path / "samples"
    samples.mkdir()
    for f in ("face0.png", "face1.png"):
        (samples / f).write_bytes((images / f).read_bytes())
    out = tmp_path / "demo"
    assert main(["demo", "--model", str(model_file), "--samples", str(samples), "--out", str(out), "--bpp", "0.05",
                 "--anchors", "jpeg,vvc", "--qps", "vvc=63;jpeg=5", "--downscale", "none", "--qualities", "0",
                 "--skip-metrics", "lpips_vgg,facenet,dlib", *FAST]) == 0
    text = capsys.readouterr().out
    assert f"report: {out / 'summary.md'}" in text and "| stylecodec all (<= 0.05 bpp" in text
    assert "| VVC floor (QP 63) |" in text and (out / "index.html").is_file()
    assert len(list((out / "streams").glob("*.sfc"))) == 2
    grid = json.loads((out / "face_grid.json").read_text())
    assert grid["faces"] == ["face0.png", "face1.png"] and (out / "face_grid.png").is_file()
    assert {r["column"] for r in grid["records"]} >= {"basic", "+middle", "all layers", "VVC floor", "VVC matched ID"}
    assert "## Decoded faces" in (out / "summary.md").read_text()
    assert "src='face_grid.png'" in (out / "index.html").read_text()
    # without --bpp: the model's own budget, as `compress` codes by default
    from stylecodec.files import atomic_torch_save
    from stylecodec.zoo import read_checkpoint
    ck = read_checkpoint(model_file)
    ck["config"]["rate_budget"] = {"bpp": 0.06, "basic_bpp": 0.03}
    atomic_torch_save(ck, tmp_path / "budget.pt")
    out = tmp_path / "demo2"
    assert main(["demo", "--model", str(tmp_path / "budget.pt"), "--samples", str(samples), "--out", str(out),
                 "--no-face-grid", "--anchors", "jpeg", "--qps", "jpeg=5", "--downscale", "none", "--qualities", "0",
                 "--skip-metrics", "lpips_vgg,facenet,dlib", *FAST]) == 0
    text = capsys.readouterr().out
    assert "compressed within the model budget (file <= 0.06 bpp, basic layer <= 0.03 bpp): 2 new" in text
    assert "| stylecodec all (<= 0.06 bpp" in text


def test_demo_without_model_and_generated_samples(model_file, tmp_path, capsys):
    assert main(["demo", "--model", str(tmp_path / "missing.pt"), "--skip-if-no-model"]) == 0
    assert "skipped" in capsys.readouterr().out
    from stylecodec.eval.samples import generate_samples
    from stylecodec.zoo import load
    paths = generate_samples(load(model_file).model, tmp_path / "gen", n=2)
    assert [Image.open(p).size for p in paths] == [(64, 64), (64, 64)]


def test_head_nme_when_the_codec_has_heads(model_file, images, tmp_path):
    heads = pytest.importorskip("stylecodec.analysis.heads")
    from stylecodec.codec import Codec
    from stylecodec.eval.harness import EvalConfig, run_eval

    codec = Codec.from_pretrained(model_file)
    codec.heads = heads.AnalysisHeads(basic_dim=codec.model.latent_dims[0], hidden=16, depth=1)
    run_eval(EvalConfig(images, tmp_path, codec=codec, anchors=[], downscale=[], qualities="0", thumbs=0,
                        skip_metrics=("ms_ssim", "lpips_alex", "lpips_vgg", "facenet", "sface", "dlib_resnet", "dlib"),
                        progress=False))
    rows = read_rows(tmp_path / "results.csv")
    assert all(math.isfinite(r["nme_head"]) == (r["codec"] == "stylecodec-basic") for r in rows)


def test_tables_compare_the_same_faces():
    """A run where stylecodec has coded fewer faces than the anchors: every table uses the shared ones."""
    from stylecodec.eval.tables import common_rows

    rows = [{"image": i, "family": f} for i in ("a", "b", "c") for f in ("vvc", "jpeg")]
    rows += [{"image": "b", "family": "stylecodec"}, {"image": "c", "family": "stylecodec"}]
    kept, left_out = common_rows(rows)
    assert sorted({r["image"] for r in kept}) == ["b", "c"] and left_out == 1 and len(kept) == 6
    assert common_rows([]) == ([], 0)


def test_headline_quality_is_the_trainers_default_quality(tmp_path):
    """eval reads the model's default quality where `stylecodec train codec` writes it
    (meta["rate_control"]["default_quality"]), and the headline uses it."""
    from stylecodec.codec import Codec
    from stylecodec.eval.harness import EvalConfig, _run_info
    from stylecodec.eval.tables import headline_quality

    torch.manual_seed(0)
    path = tmp_path / "m.pt"
    save_model(StyleCodecModel(tiny_config()), path, {"rate_control": {"default_quality": 2}})
    codec = Codec.from_pretrained(path)
    info = _run_info(EvalConfig(tmp_path, tmp_path), codec, [], codec.quality_range, 1, "off")
    assert info["default_quality"] == 2 and info["model_source"] == str(path)
    table = [{"codec": "stylecodec-all", "point": "sweep", "setting": f"q{q}", "n": 1, "bpp": 0.001 * q}
             for q in codec.quality_range]
    assert headline_quality(table, info) == 2          # not the highest quality within 0.01 bpp (5)
    assert headline_quality(table, {**info, "default_quality": None}) == 5


def test_plan_line_and_lfw_pairs_in_proportion(model_file, images, tmp_path):
    """eval says what runs and how long it should take; LFW pairs scale with the images asked for."""
    from stylecodec.codec import Codec
    from stylecodec.eval.harness import EvalConfig
    from stylecodec.eval.plan import default_lfw_pairs, describe

    assert [default_lfw_pairs(n) for n in (1, 2, 200, 1000)] == [40, 40, 4000, 6000]
    cfg = EvalConfig(images, tmp_path, anchors=["vvc"], qps={"vvc": [51, 63]}, downscale=[2], qualities="0,5")  # + vvc_down2: DOWNSCALE_SWEEP
    line = describe(cfg, Codec.from_pretrained(model_file), default_lfw_pairs(3))
    assert line.startswith("plan: 3 images x 10 rows (stylecodec 6, vvc 4) + LFW 60 pairs") and "expected about" in line


def test_eval_refuses_to_mix_rows_of_other_weights(tmp_path):
    """Resuming an eval folder with another refiner (same streams, other pixels) would mix its rows."""
    from stylecodec.codec import Codec
    from stylecodec.eval.harness import EvalConfig, run_eval
    from test_refiner import _with_refiner, faces, tiny_model

    d = tmp_path / "faces"
    d.mkdir()
    for i, f in enumerate(faces(2)):
        Image.fromarray(f).save(d / f"f{i}.png")
    base = tiny_model()
    cfg = dict(anchors=[], downscale=[], qualities="3", thumbs=0, progress=False,
               skip_metrics=("ms_ssim", "lpips_alex", "lpips_vgg", "facenet", "sface", "dlib_resnet", "dlib"))
    run_eval(EvalConfig(d, tmp_path / "out", codec=Codec(base), **cfg))
    with pytest.raises(StylecodecError, match="another --out folder"):
        run_eval(EvalConfig(d, tmp_path / "out", codec=Codec(_with_refiner(base, seed=1)), **cfg))
    assert run_eval(EvalConfig(d, tmp_path / "out", codec=Codec(base), **cfg))["rows_new"] == 0   # same weights: resumes
    run_eval(EvalConfig(d, tmp_path / "other", codec=Codec(_with_refiner(base, seed=1)), **cfg))
    from stylecodec.eval.results import merge_runs
    with pytest.raises(StylecodecError, match="different models"):
        merge_runs([tmp_path / "out", tmp_path / "other"], tmp_path / "merged")
