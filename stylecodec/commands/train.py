"""``stylecodec train WHAT``: training runs (``prior`` = the StyleGAN2 prior, ``codec`` = the codec).

Each run writes into ``--out RUN_DIR``: checkpoints ``ckpt-<step>.pt``, ``config.json``,
TensorBoard logs ``tb/``, sample grids ``samples/``, and the final product (``prior.pt``;
``model.pt`` + ``model.json`` for the codec).
Multi-GPU / multi-node: ``torchrun --nproc_per_node=K -m stylecodec.cli train prior|codec ...``.
Exit status: 0 finished, 130 / 143 stopped by SIGINT / SIGTERM after saving a checkpoint
(continue with ``--resume auto``), 1 bad input.
"""
from __future__ import annotations

import argparse
from typing import Callable

# Library imports sit inside the functions: the CLI imports only what the command it runs needs
# (start-up time; see stylecodec/commands/__init__.py).

# name -> (add_arguments, run, help). Further trainers (codec, heads) add an entry here.
TRAINERS: dict[str, tuple[Callable, Callable, str]] = {}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="what", metavar="WHAT")
    sub.required = True
    for name, (add, run_, help_) in TRAINERS.items():
        p = sub.add_parser(name, help=help_, description=help_)
        add(p)
        p.set_defaults(_train=run_)


def run(args: argparse.Namespace) -> int:
    return args._train(args)


# ---------------------------------------------------------------- prior
_PRIOR_OPTIONS = [  # (flag, type, help); every default is None = "from the preset / the resumed run"
    ("--resolution", int, "image side in pixels (power of two)"),
    ("--batch", int, "global batch (split over processes)"),
    ("--kimg", float, "total training length in thousands of real images"),
    ("--channel-base", int, "channels at resolution r = min(channel_base / r, channel_max)"),
    ("--channel-max", int, "widest layer"),
    ("--map-layers", int, "mapping-network depth"),
    ("--z-dim", int, "latent z size"),
    ("--w-dim", int, "style w size"),
    ("--r1-gamma", float, "R1 weight (default without preset: 0.0002 R^2 / batch)"),
    ("--r1-interval", int, "lazy R1 every this many D steps"),
    ("--pl-weight", float, "path-length regularisation weight (0 = off; official: 2)"),
    ("--pl-interval", int, "lazy path-length reg every this many G steps"),
    ("--style-mixing", float, "style-mixing probability"),
    ("--ema-kimg", float, "G_ema half-life in kimg (default without preset: batch / 3.2)"),
    ("--ema-rampup", float, "EMA ramp-up ratio (0 = off)"),
    ("--augment", str, "DiffAugment policy: comma-separated subset of color,translation,cutout ('' = off)"),
    ("--lr", float, "Adam learning rate (G and D)"),
    ("--mbstd-group", int, "minibatch-stddev group size in D"),
    ("--conv-clamp", int, "clamp conv outputs to +-this (0 = off)"),
    ("--val-count", int, "last N files by name are validation (never trained on)"),
    ("--seed", int, "random seed"),
    ("--log-kimg", float, "TensorBoard scalars every this many kimg"),
    ("--snap-kimg", float, "sample grid every this many kimg"),
    ("--ckpt-kimg", float, "checkpoint every this many kimg"),
    ("--keep", int, "checkpoints kept in RUN_DIR"),
    ("--workers", int, "data-loader processes per rank (default: spare CPUs, at most 8)"),
    ("--max-minutes", float, "stop (checkpoint + prior.pt) after this many minutes of this invocation"),
]


def _add_run_options(p: argparse.ArgumentParser, presets: dict, options: list, preset_help: str) -> None:
    """Options every adversarial/codec trainer shares, then its own ``options`` (all default None)."""
    p.add_argument("--data", default=None,
                   help="image folder, packed .npy/.npz file, or glob of packed files "
                        "(default: $STYLECODEC_DATA or ../shared/data/utkface)")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--preset", choices=sorted(presets), default=None, help=preset_help)
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto': continue from the newest checkpoint in --out (fresh start when none)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: auto")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default=None,
                   help="auto: bf16 autocast on CUDA, fp32 on CPU (CPU is always fp32)")
    p.add_argument("--xflip", action=argparse.BooleanOptionalAction, default=None, help="random mirroring")
    for flag, type_, help_ in options:
        p.add_argument(flag, type=type_, default=None, help=help_)


def _add_prior(p: argparse.ArgumentParser) -> None:
    from ..train.presets import PRIOR_PRESETS

    _add_run_options(p, PRIOR_PRESETS, _PRIOR_OPTIONS,
                     "cpu64: 64px tiny nets for 2 CPU cores; gpu256: 256px (n=14) for one H100")


def _run_prior(args: argparse.Namespace) -> int:
    from ..train.prior import train_prior

    keys = ["data", "out", "device", "precision", "xflip"] + [f[2:].replace("-", "_") for f, _, _ in _PRIOR_OPTIONS]
    return train_prior({k: getattr(args, k) for k in keys}, preset=args.preset, resume=args.resume)


TRAINERS["prior"] = (_add_prior, _run_prior, "train the StyleGAN2 prior G adversarially (writes RUN_DIR/prior.pt)")


# ---------------------------------------------------------------- codec
_CODEC_OPTIONS = [  # (flag, type, help); every default is None = "from the preset / the resumed run"
    ("--prior", str, "frozen/initial G: a `train prior` prior.pt, an official .pkl or a G state dict"),
    ("--init", str, "start every part from a codec model.pt (e.g. the pretrain-encoder stage's)"),
    ("--val-data", str, "validation source (default: --data; its last --val-count files)"),
    ("--batch", int, "global batch (split over processes)"),
    ("--kimg", float, "training length in thousands of images"),
    ("--resolution", int, "face side in pixels (e.g. 128 for the 128x128 variant; a prior fixes it)"),
    ("--channel-base", int, "generator channels at resolution r = min(channel_base / r, channel_max)"),
    ("--channel-max", int, "generator's widest layer"),
    ("--z-dim", int, "generator z size"),
    ("--w-dim", int, "generator w size"),
    ("--map-layers", int, "mapping-network depth"),
    ("--backbone", str, "encoder timm backbone (resnet18, resnet34, ...)"),
    ("--enc-res", int, "encoder input resolution"),
    ("--style-width", int, "encoder map2style width"),
    ("--fpn-width", int, "encoder FPN width"),
    ("--latent-dims", str, "coded latent sizes basic,middle,enhanced (e.g. 16,24,32)"),
    ("--qualities", int, "number of rate points (quality indices)"),
    ("--model-json", str, "JSON file of StyleCodecModel config overrides"),
    ("--lr", float, "Adam lr of E, transforms, LSET and gains"),
    ("--g-lr", float, "Adam lr of G.synthesis (joint mode)"),
    ("--d-lr", float, "Adam lr of D (joint mode with --adv-weight)"),
    ("--grad-clip", float, "clip the gradient norm (0 = off)"),
    ("--rate", float, "rate weight per bpp (lambda_rate, before rate control)"),
    ("--rate-ratio", float, "rate multiplier ratio between neighbouring qualities (m[q] = ratio^(Q-1-q))"),
    ("--lambda-basic", float, "weight of D_machine(basic)"),
    ("--lambda-middle", float, "weight of D_identity/perceptual(basic+middle)"),
    ("--lambda-enhanced", float, "weight of D_fidelity(all)"),
    ("--id-weight", float, "identity (1 - cos) weight inside the basic and middle terms"),
    ("--lpips-weight", float, "LPIPS weight inside the middle and enhanced terms"),
    ("--l2-weight", float, "MSE weight inside D_fidelity"),
    ("--ms-ssim-weight", float, "(1 - MS-SSIM) weight inside D_fidelity"),
    ("--latent-weight", float, "W+ latent loss weight"),
    ("--adv-weight", float, "light adversarial term on the full decode (joint mode; 0 = off)"),
    ("--r1-gamma", float, "R1 weight for D (default 0.0002 R^2 / batch)"),
    ("--r1-interval", int, "lazy R1 every this many steps"),
    ("--identity", str, "identity network: facenet, standin, auto (facenet if cached) or none"),
    ("--id-size", int, "identity network input side (FaceNet is trained at 160)"),
    ("--perceptual", str, "LPIPS trunk: alex, vgg or none"),
    ("--heads", str, "machine heads trained with the codec on the basic layer (D_machine): 'analysis' = landmarks (dlib "
                "teacher) + identity (facenet teacher), exported into model.pt for `stylecodec analyze`; '' = none "
                "(presets: analysis)"),
    ("--teacher-labels", str, "cached dlib landmarks of the training images for --heads analysis (python -m "
                              "stylecodec.analysis.teacher --export FILE): no dlib needed while training"),
    ("--target-bpp", float, "highest quality's whole file in bpp (0 = no rate control); with --target-basic-bpp "
                            "also the trained model's default per-face budget (Codec.compress)"),
    ("--target-basic-bpp", float, "the basic layer extracted alone (header included) in bpp at the highest "
                                  "quality: its own rate controller (presets: 0.003; 0 = off)"),
    ("--target-bytes", int, "highest quality's whole file in bytes (overrides --target-bpp)"),
    ("--rate-margin", float, "aim the highest quality's mean file this many bytes under the target"),
    ("--rate-control", float, "rate-control step size (0 = fixed rate weight)"),
    ("--p-default", float, "probability of training a sample at the highest quality"),
    ("--quant", str, "quantisation proxy: mixed, noise or ste"),
    ("--truncation", float, "truncation psi for generated samples (pretrain-encoder)"),
    ("--style-mixing", float, "style-mixing probability for generated samples (pretrain-encoder)"),
    ("--prefix-probs", str, "decode each sample at ONE prefix drawn with these weights basic,middle,all "
                            "(one synthesis pass per step; '' = decode all three)"),
    ("--threads", int, "torch CPU threads per process (default: torch's; 1 on a busy 2-core machine)"),
    ("--val-count", int, "last N files by name are validation (never trained on)"),
    ("--val-images", int, "validation faces used"),
    ("--coder-images", int, "faces compressed by the real coder at a coder check"),
    ("--val-every", int, "validate every this many steps"),
    ("--coder-every", int, "real-coder check every this many validations"),
    ("--log-every", int, "TensorBoard scalars every this many steps"),
    ("--snap-every", int, "sample grid (original | basic | +middle | all) every this many steps"),
    ("--ckpt-every", int, "checkpoint every this many steps"),
    ("--keep", int, "checkpoints kept in RUN_DIR"),
    ("--seed", int, "random seed"),
    ("--workers", int, "data-loader processes per rank (default: spare CPUs, at most 8)"),
    ("--max-minutes", float, "stop (checkpoint + model.pt) after this many minutes of this invocation"),
    ("--storage", str, "model.pt stores G and E as fp16 (default: half the file; streams are made by the "
                       "model as loaded) or fp32"),
]


def _add_codec(p: argparse.ArgumentParser) -> None:
    from ..train.presets import CODEC_MODES, CODEC_PRESETS

    p.add_argument("--mode", choices=CODEC_MODES, default=None,
                   help="pretrain-encoder: frozen prior, generated faces, w known; joint: E + codec + G.synthesis "
                        "on real faces (default); finetune: G frozen, real faces")
    _add_run_options(p, CODEC_PRESETS, _CODEC_OPTIONS,
                     "cpu: slim 256px model for 2 CPU cores; gpu256: the default model (n=14) on one GPU")


def _run_codec(args: argparse.Namespace) -> int:
    from ..train.codec import train_codec

    keys = ["mode", "data", "out", "device", "precision", "xflip"] + [f[2:].replace("-", "_") for f, _, _ in
                                                                     _CODEC_OPTIONS]
    return train_codec({k: getattr(args, k) for k in keys}, preset=args.preset, resume=args.resume)


TRAINERS["codec"] = (_add_codec, _run_codec,
                     "train the codec (E, transforms, LSET, gains; joint mode also G) (writes RUN_DIR/model.pt)")


# ---------------------------------------------------------------- heads
_HEADS_OPTIONS = [  # (flag, type, help); None = the default (stylecodec.train.heads.DEFAULTS) / the resumed run
    ("--steps", int, "optimiser steps (default 20000)"),
    ("--batch", int, "faces per step (default 256)"),
    ("--lr", float, "AdamW learning rate (default 1e-3; warm-up, then cosine to 1%%)"),
    ("--weight-decay", float, "AdamW weight decay (default 1e-4)"),
    ("--warmup", int, "warm-up steps (default 500)"),
    ("--w-landmarks", float, "weight of the landmark NME loss (default 1)"),
    ("--w-identity", float, "weight of the identity (1 - cosine) loss (default 1)"),
    ("--hidden", int, "MLP width (default 512)"),
    ("--depth", int, "hidden layers per MLP (default 3)"),
    ("--dropout", float, "dropout in the MLPs (default 0)"),
    ("--limit", int, "train on the first N train-split faces only"),
    ("--val-count", int, "last N files by name are held out, never trained on (default 1000)"),
    ("--val-images", int, "held-out faces scored during training (default 200; 0 = none)"),
    ("--seed", int, "random seed (default 0)"),
    ("--log-every", int, "TensorBoard scalars every this many steps (default 100)"),
    ("--val-every", int, "held-out scores every this many steps (default 1000)"),
    ("--ckpt-every", int, "checkpoint every this many steps (default 1000)"),
    ("--keep", int, "checkpoints kept in RUN_DIR (default 2)"),
    ("--encode-batch", int, "faces per encoder pass when caching the basic latents (default 64)"),
    ("--teacher-workers", int, "processes for dlib when computing teacher labels (default 1)"),
    ("--max-minutes", float, "stop (checkpoint + model.pt) after this many minutes of this invocation"),
]


def _add_heads(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, metavar="NAME|PATH", help="the frozen codec (default: default)")
    p.add_argument("--data", default=None,
                   help="UTKFace-like image folder (default: $STYLECODEC_DATA or ../shared/data/utkface)")
    p.add_argument("--out", required=True, help="run directory (writes RUN_DIR/model.pt = codec + heads)")
    p.add_argument("--inputs", choices=("basic", "basic+pred"), default=None,
                   help="head input: ŷ_basic, or ŷ_basic + LSET-predicted higher layers (default: basic)")
    p.add_argument("--teacher-cache", default=None, metavar="DIR",
                   help="teacher-label cache (default: $STYLECODEC_CACHE/teacher or ~/.cache/stylecodec/teacher)")
    p.add_argument("--resume", default=None, metavar="auto|PATH",
                   help="'auto': continue from the newest checkpoint in --out (fresh start when none)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None, help="default: auto")
    for flag, type_, help_ in _HEADS_OPTIONS:
        p.add_argument(flag, type=type_, default=None, help=help_)


def _run_heads(args: argparse.Namespace) -> int:
    from ..train.heads import train_heads

    keys = ["model", "data", "out", "inputs", "teacher_cache", "device"] + [
        f[2:].replace("-", "_") for f, _, _ in _HEADS_OPTIONS]
    return train_heads({k: getattr(args, k) for k in keys}, resume=args.resume)


TRAINERS["heads"] = (_add_heads, _run_heads,
                     "train the analysis heads (landmarks, identity) on a frozen codec's basic layer "
                     "(writes RUN_DIR/model.pt)")


# ---------------------------------------------------------------- machine-first codec
def _add_machine_first(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="run directory (writes RUN_DIR/model.pt)")
    p.add_argument("--data", default="", help="UTKFace-like image folder (default: $STYLECODEC_DATA or "
                                               "../shared/data/utkface)")
    p.add_argument("--steps", type=int, default=6000, help="LSET optimiser steps (default: %(default)s)")
    p.add_argument("--batch", type=int, default=256, help="latent vectors per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default: %(default)s)")
    p.add_argument("--pca-fit", type=int, default=6000, help="training faces for the eigenface PCA")
    p.add_argument("--val-count", type=int, default=1000, help="last N files by name are held out")
    p.add_argument("--bpp", type=float, default=0.01, help="the model's rate budget, whole file (default: %(default)s)")
    p.add_argument("--basic-bpp", type=float, default=0.003, help="... and the basic layer alone (default: %(default)s)")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    p.add_argument("--resume", default="auto", metavar="auto|PATH|none",
                   help="continue from the newest checkpoint in --out (default) or a given one; 'none': refuse "
                        "a folder that holds checkpoints")
    p.add_argument("--seed", type=int, default=0)


def _run_machine_first(args: argparse.Namespace) -> int:
    from ..train.machine_first import MachineFirstConfig, train_machine_first

    cfg = MachineFirstConfig(out=args.out, data=args.data, steps=args.steps, batch=args.batch, lr=args.lr,
                             pca_fit=args.pca_fit, val_count=args.val_count, bpp=args.bpp, basic_bpp=args.basic_bpp,
                             max_minutes=args.max_minutes, resume=None if args.resume == "none" else args.resume,
                             seed=args.seed)
    train_machine_first(cfg)
    return 0


TRAINERS["machine-first"] = (_add_machine_first, _run_machine_first,
                             "the machine-first codec (identity + shape basic layer, eigenface layers): fits the "
                             "PCA models and trains the LSET on cached teacher outputs; CPU, minutes")


# ---------------------------------------------------------------- refiner of a machine-first codec
def _add_refiner(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="NAME|PATH",
                   help="the machine-first model to refine; when it has a refiner (e.g. default), training goes on "
                        "from it (images seen and CPU hours carry over); default-linear starts from eigenfaces")
    p.add_argument("--out", required=True, help="run directory (writes RUN_DIR/model.pt, metrics.csv)")
    p.add_argument("--latents", default="", help="latents.npz of the machine-first run (default: computed)")
    p.add_argument("--init-refiner", default="", metavar="PATH",
                   help="start from the refiner of another machine-first model with the same PCA fits up to "
                        "component signs (e.g. one with an older LSET or quality table); its images seen and "
                        "CPU hours carry over")
    p.add_argument("--data", default="", help="UTKFace-like image folder (default: ../shared/data/utkface)")
    p.add_argument("--batch", type=int, default=8, help="faces per step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=2e-4, help="Adam learning rate (default: %(default)s)")
    p.add_argument("--ema-kimg", type=float, default=0.0,
                   help="half-life in thousand images of the weight average that is evaluated and saved (StyleGAN's "
                        "G_ema; the raw weights' figures go to RUN_DIR/metrics_raw.csv); 0: raw weights "
                        "(default: %(default)s)")
    p.add_argument("--w-lpips", type=float, default=1.0, help="LPIPS-Alex weight (default: %(default)s)")
    p.add_argument("--w-id", type=float, default=0.1, help="facenet identity weight (default: %(default)s)")
    p.add_argument("--w-mse", type=float, default=0.0, help="squared-error weight (default: %(default)s)")
    p.add_argument("--w-adv", type=float, default=0.0,
                   help="projected-discriminator (frozen EfficientNet-Lite0 features) hinge-loss weight; 0: no GAN "
                        "(default: %(default)s)")
    p.add_argument("--d-lr", type=float, default=2e-4, help="the discriminator's learning rate (default: %(default)s)")
    p.add_argument("--quality-probs", default="", metavar="W0,W1,...",
                   help="weight of each quality in training, quality 0 first (e.g. the qualities the default "
                        "budget picks; normalised); default: uniform")
    p.add_argument("--kimg", type=float, default=1000.0, help="stop after this many thousand images")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this long")
    p.add_argument("--eval-every", type=int, default=500, help="steps between held-out evaluations")
    p.add_argument("--precision", choices=("auto", "bf16", "fp32"), default="auto",
                   help="bf16 autocast for training (auto: on CUDA with bf16; on a CPU with avx512_bf16 when a "
                        "timed step is faster than fp32, which depends on the chip)")
    p.add_argument("--device", default="auto", help="cpu, cuda[:i] or auto (cuda when available; default)")
    p.add_argument("--resume", default="auto", metavar="auto|PATH|none", help="default: auto")
    p.add_argument("--seed", type=int, default=0)


def _numbers(text: str, flag: str) -> tuple[float, ...]:
    from ..errors import StylecodecError

    try:
        return tuple(float(v) for v in text.split(",")) if text.strip() else ()
    except ValueError:
        raise StylecodecError(f"{flag} {text!r} is not a comma-separated list of numbers") from None


def _run_refiner(args: argparse.Namespace) -> int:
    from ..train.refiner import RefinerConfig, train_refiner

    cfg = RefinerConfig(model=args.model, out=args.out, latents=args.latents, init_refiner=args.init_refiner,
                        data=args.data, batch=args.batch,
                        lr=args.lr, ema_kimg=args.ema_kimg, w_lpips=args.w_lpips, w_id=args.w_id,
                        w_mse=args.w_mse, w_adv=args.w_adv, d_lr=args.d_lr, kimg=args.kimg,
                        quality_probs=_numbers(args.quality_probs, "--quality-probs"),
                        max_minutes=args.max_minutes, eval_every=args.eval_every, precision=args.precision,
                        device=args.device, resume=None if args.resume == "none" else args.resume, seed=args.seed)
    train_refiner(cfg)
    return 0


TRAINERS["refiner"] = (_add_refiner, _run_refiner,
                       "the machine-first decoder's refiner (eigenfaces + a learned residual), codec frozen; "
                       "logs the learning curve to RUN_DIR/metrics.csv")
