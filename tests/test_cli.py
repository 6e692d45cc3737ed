"""The command line: help, exit codes, the environment check."""
from __future__ import annotations

import subprocess
import sys

import pytest

from stylecodec.cli import COMMANDS, main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stylecodec.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_help_lists_every_command():
    r = run_cli("--help")
    assert r.returncode == 0
    for name in COMMANDS:
        assert name in r.stdout


def test_usage_error_exits_2():
    r = run_cli("no-such-command")
    assert r.returncode == 2
    assert "invalid choice" in r.stderr


def test_eval_rejects_unknown_lfw_entries_before_any_work(tmp_path):
    with pytest.raises(SystemExit) as e:
        main(["eval", "--images", str(tmp_path), "--out", str(tmp_path / "run"), "--lfw-entries", "vvc,jpeg"])
    assert e.value.code == 2 and not (tmp_path / "run").exists()


def test_unknown_asset_is_one_line_error_exit_1():
    r = run_cli("assets", "fetch", "no-such-asset")
    assert r.returncode == 1
    assert "unknown asset 'no-such-asset'" in r.stderr
    assert "Traceback" not in r.stderr


def test_env_reports_versions_and_anchors(capsys):
    assert main(["env"]) == 0
    out = capsys.readouterr().out
    assert "torch" in out and "compressai" in out
    assert "libvvenc=yes" in out, "the bundled FFmpeg must offer the VVC encoder (imageio-ffmpeg==0.8.1)"


def test_every_command_module_has_the_contract():
    import importlib

    for module, _ in COMMANDS.values():
        mod = importlib.import_module(module)
        assert callable(mod.add_arguments) and callable(mod.run)


def test_stream_tools_start_without_torch(tmp_path):
    """inspect / extract read and cut streams with no model: the CLI builds only the command it
    runs, and the bitstream module imports torch only to fingerprint weights."""
    from stylecodec.bitstream import StreamHeader, pack

    src, dst = tmp_path / "a.sfc", tmp_path / "b.sfc"
    src.write_bytes(pack(StreamHeader(resolution=256, quality=3, fingerprint=0x1234), [b"\x01\x02", b"\x03", b"\x04"]))
    code = ("import sys; from stylecodec.cli import main; "
            f"rc = main(['inspect', {str(src)!r}]) + main(['extract', {str(src)!r}, '-o', {str(dst)!r}, "
            "'--layers', 'basic']); print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "quality 3" in r.stdout and r.stdout.strip().endswith("no torch")
    assert dst.read_bytes() == pack(StreamHeader(resolution=256, quality=3, fingerprint=0x1234), [b"\x01\x02"])
