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


# The least each command needs on its command line.
MINIMAL_ARGS = {
    "env": [], "assets": ["list"], "convert-pkl": ["in.pkl", "out.pt"], "train": ["heads", "--out", "run"],
    "compress": ["in.png", "-o", "out.sfc"], "decompress": ["in.sfc", "-o", "out.png"], "inspect": ["in.sfc"],
    "extract": ["in.sfc", "-o", "out.sfc", "--layers", "basic"], "analyze": ["in.sfc"], "verify-lfw": [],
    "compress-dir": ["in", "out"], "eval": ["--images", "in", "--out", "run"], "eval-merge": ["a", "--out", "run"],
    "report": ["run"], "demo": [], "index": ["in", "-o", "out.sfi"], "search": ["probe.sfc", "--index", "out.sfi"],
}


def test_every_command_parses_its_arguments_and_runs_its_module(monkeypatch, capsys):
    """For each command: ``COMMAND --help`` exits 0 with that command's usage and one-line help, and
    main() parses its arguments and returns what its module's ``run`` returns."""
    import importlib

    assert set(MINIMAL_ARGS) == set(COMMANDS)
    for name, (module, help_) in COMMANDS.items():
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        out = capsys.readouterr().out
        assert e.value.code == 0 and out.startswith(f"usage: stylecodec {name}") and help_ in " ".join(out.split())
        seen = []
        monkeypatch.setattr(importlib.import_module(module), "run", lambda args, name=name: seen.append(args) or 7)
        assert main([name, *MINIMAL_ARGS[name]]) == 7 and seen[0].command == name


def test_stream_tools_start_without_torch(tmp_path):
    """inspect / extract read and cut streams with no model: the CLI builds only the command it
    runs, and the bitstream module imports torch only to fingerprint weights."""
    from stylecodec.bitstream import ModelKey, StreamHeader, pack

    key = ModelKey(bytes(range(32)))
    src, dst = tmp_path / "a.sfc", tmp_path / "b.sfc"
    src.write_bytes(pack(StreamHeader(resolution=256, quality=3), [b"\x01\x02", b"\x03", b"\x04"], key))
    code = ("import sys; from stylecodec.cli import main; "
            f"rc = main(['inspect', {str(src)!r}]) + main(['extract', {str(src)!r}, '-o', {str(dst)!r}, "
            "'--layers', 'basic']); print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(rc)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "quality 3" in r.stdout and r.stdout.strip().endswith("no torch")
    assert dst.read_bytes() == pack(StreamHeader(resolution=256, quality=3), [b"\x01\x02"], key)


def test_version_1_files_are_refused_in_one_line(tmp_path, capsys):
    """A version 1 stream (docs/bitstream.md, section 9): every command that reads streams exits 1
    with one line that names the version."""
    v1 = tmp_path / "old.sfc"
    v1.write_bytes(bytes.fromhex("5346431c630684" "0cff" "e2ff6e322e0000005b1e2212" "0460" "60f8b463" "08c6"
                                 "6c2dc811575b3a0c"))
    for argv in (["inspect", str(v1)], ["extract", str(v1), "-o", str(tmp_path / "x.sfc"), "--layers", "basic"],
                 ["decompress", str(v1), "-o", str(tmp_path / "x.png")], ["analyze", str(v1)]):
        assert main(argv) == 1, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "bitstream version 1" in err and "version 2" in err, (argv, err)
    assert not (tmp_path / "x.sfc").exists() and not (tmp_path / "x.png").exists()


def test_thread_choice_follows_the_load(monkeypatch):
    """Torch threads: OMP_NUM_THREADS when set, else the available CPUs minus the 1-minute load, >= 1."""
    from stylecodec import threads

    monkeypatch.setattr(threads, "available_cpus", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for load, want in ((0.2, 2), (1.2, 1), (3.9, 1)):
        monkeypatch.setattr(threads.os, "getloadavg", lambda load=load: (load, 0.0, 0.0))
        assert threads.choose_threads() == want
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.choose_threads() == 3
