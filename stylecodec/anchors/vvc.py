"""VVC (H.266) anchors: libvvenc in the bundled FFmpeg, and external vvenc / VTM programs.

:class:`VvcAnchor` runs (256x256 example, QP 37)::

    ffmpeg -f rawvideo -pix_fmt yuv420p10le -s 256x256 -r 1 -i input.yuv -frames:v 1
           -c:v libvvenc -preset slower -qp 37 -qpa 0 -g 1
           -vvenc-params IntraQPOffset=0:AccessUnitDelimiter=0:HrdParametersPresent=0:
                         VuiParametersPresent=0:SEIDecodedPictureHash=0:InternalBitDepth=8
           -f vvc out.266

and decodes with FFmpeg's native VVC decoder (``-f vvc -c:v vvc``). Notes:

* libvvenc only accepts ``yuv420p10le``; the 8-bit samples are shifted left by 2 and
  ``InternalBitDepth=8`` makes vvenc code them as 8-bit (shifted back exactly).
  ``bit_depth=10`` codes at 10 bits instead (VVenC's default, Main 10 either way).
* ``IntraQPOffset=0``: without it vvenc codes the intra picture 3 QP below the requested
  one (``-qp 63`` gives QP 60). The QP actually used is read from vvenc's per-picture
  log line and checked; a mismatch raises :class:`AnchorError`.
* ``-g 1`` (all-intra: GOPSize=1, IntraPeriod=1) makes the SPS much smaller than the
  default random-access set-up (a 256x256 face at QP 63: 95 instead of 203 bytes).
* FFmpeg's wrapper switches access unit delimiters on; ``AccessUnitDelimiter=0`` turns
  them off again (vvenc-params are applied after the wrapper's own settings).
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from .base import AnchorError, YuvAnchor, read_output, run_ffmpeg, run_tool
from .nal import parse_annexb

__all__ = ["VvcAnchor", "VvencAppAnchor", "VtmAnchor", "find_program"]

_QP_LINE = re.compile(rb"I-SLICE, QP\s+(-?\d+)")


def find_program(name_or_path: str | Path) -> str:
    """Absolute path of an executable given by name (searched on PATH) or path, or AnchorError."""
    p = Path(name_or_path)
    if p.parent != Path(".") or p.is_absolute():
        if p.is_file() and shutil.which(str(p)):
            return str(p.resolve())
        raise AnchorError(f"{p} is not an executable file")
    found = shutil.which(str(name_or_path))
    if not found:
        raise AnchorError(f"{name_or_path} not found on PATH; install it or give its path")
    return found


class _VvcStream(YuvAnchor):
    """Common parts of the VVC anchors: QP range, sweep, NAL accounting, FFmpeg decoding."""

    quality_name = "qp"
    q_range = (0, 63)
    sweep_values = tuple(range(22, 64))

    def __init__(self, bit_depth: int = 8, full_range: bool = True, timeout_s: float | None = None):
        if bit_depth not in (8, 10):
            raise AnchorError(f"{self.name}: bit_depth must be 8 or 10, not {bit_depth}")
        self.coded_bit_depth = self.input_bit_depth = bit_depth
        self.full_range = full_range
        if timeout_s is not None:
            self.timeout_s = timeout_s

    def check_q(self, q: float) -> None:
        super().check_q(q)
        if int(q) != q:
            raise AnchorError(f"{self.name}: qp must be an integer, not {q}")

    def _payload(self, data: bytes) -> tuple[int, dict]:
        layout = parse_annexb(data, "vvc")
        if not layout.slice_bytes:
            raise AnchorError(f"{self.name}: no slice NAL unit in the stream ({layout.summary()})")
        return layout.payload_bytes, {"slice_bytes": layout.slice_bytes,
                                      "parameter_set_bytes": layout.parameter_set_bytes,
                                      "nal_units": layout.types()}

    def _check_qp(self, log: bytes, q: float) -> dict:
        m = _QP_LINE.search(log)
        if m is None:
            return {}
        used = int(m.group(1))
        if used != int(q):
            raise AnchorError(f"{self.name}: asked for QP {int(q)} but the intra picture was coded at QP {used}")
        return {"qp_used": used}

    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        return self._ffmpeg_decode(data, tmp, "vvc", "vvc", ".266")


class VvcAnchor(_VvcStream):
    """VVC through FFmpeg's libvvenc (preset slower, QPA off, one intra picture)."""

    name = "vvc"
    ffmpeg_encoder, ffmpeg_decoder = "libvvenc", "vvc"

    def __init__(self, preset: str = "slower", bit_depth: int = 8, full_range: bool = True,
                 threads: int | None = None, extra_params: dict[str, str] | None = None,
                 timeout_s: float | None = None):
        super().__init__(bit_depth, full_range, timeout_s)
        self.input_bit_depth = 10  # libvvenc takes yuv420p10le only
        self.preset = preset
        self.threads = threads
        self.params = {"IntraQPOffset": "0", "AccessUnitDelimiter": "0", "HrdParametersPresent": "0",
                       "VuiParametersPresent": "0", "SEIDecodedPictureHash": "0",
                       "InternalBitDepth": str(bit_depth), **(extra_params or {})}

    def encoder_args(self, q: float) -> list[str]:
        """The FFmpeg output options for QP ``q`` (after the raw input options)."""
        args = ["-c:v", "libvvenc", "-preset", self.preset, "-qp", str(int(q)), "-qpa", "0", "-g", "1"]
        if self.threads:
            args += ["-threads", str(self.threads)]
        return args + ["-vvenc-params", ":".join(f"{k}={v}" for k, v in self.params.items())]

    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        out = tmp / "out.266"
        r = run_ffmpeg([*self._ffmpeg_raw_input(src, width, height), *self.encoder_args(q), "-f", "vvc", str(out)],
                       timeout=self.timeout_s, loglevel="verbose")
        return read_output(out, f"{self.name} encoder"), self._check_qp(r.stdout + r.stderr, q)


class VvencAppAnchor(_VvcStream):
    """VVC through an external VVenC expert application (``vvencFFapp``), same settings as :class:`VvcAnchor`.

    The easy-mode ``vvencapp`` cannot set ``IntraQPOffset``, so the expert app is
    required. Decoding uses ``vvdecapp`` when given or found on PATH, else FFmpeg.
    """

    name = "vvencapp"

    def __init__(self, encoder: str | Path = "vvencFFapp", decoder: str | Path | None = None,
                 preset: str = "slower", bit_depth: int = 8, full_range: bool = True,
                 timeout_s: float | None = None):
        super().__init__(bit_depth, full_range, timeout_s)
        self.encoder, self.decoder, self.preset = encoder, decoder, preset

    def check_available(self) -> None:
        find_program(self.encoder)
        if self.decoder is not None:
            find_program(self.decoder)

    def _decoder_path(self) -> str | None:
        if self.decoder is not None:
            return find_program(self.decoder)
        return shutil.which("vvdecapp")

    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        exe, out = find_program(self.encoder), tmp / "out.266"
        r = run_tool([exe, f"--InputFile={src}", f"--Size={width}x{height}", f"--InputBitDepth={self.input_bit_depth}",
                      f"--InternalBitDepth={self.coded_bit_depth}", "--FrameRate=1", "--FramesToBeEncoded=1",
                      f"--preset={self.preset}", f"--QP={int(q)}", "--PerceptQPA=0", "--GOPSize=1", "--IntraPeriod=1",
                      "--IntraQPOffset=0", "--AccessUnitDelimiter=0", "--VuiParametersPresent=0",
                      "--HrdParametersPresent=0", "--SEIDecodedPictureHash=0", "--Verbosity=4",
                      f"--BitstreamFile={out}"], timeout=self.timeout_s, cwd=tmp)
        return read_output(out, exe), self._check_qp(r.stdout + r.stderr, q)

    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        dec = self._decoder_path()
        if dec is None:
            return super()._decode_yuv(data, tmp)
        stream, out = tmp / "stream.266", tmp / "decoded.yuv"
        stream.write_bytes(data)
        run_tool([dec, "-b", stream, "-o", out], timeout=self.timeout_s, cwd=tmp)
        return read_output(out, dec)


class VtmAnchor(_VvcStream):
    """VVC through the reference software VTM (``EncoderApp`` / ``DecoderApp``).

    ``cfg`` is passed as ``-c`` (VTM's ``encoder_intra_vtm.cfg`` is the usual choice);
    the command line then forces one intra picture at exactly QP ``q``.
    """

    name = "vtm"
    timeout_s = 1800.0

    def __init__(self, encoder: str | Path = "EncoderApp", decoder: str | Path = "DecoderApp",
                 cfg: str | Path | None = None, bit_depth: int = 8, full_range: bool = True,
                 timeout_s: float | None = None):
        super().__init__(bit_depth, full_range, timeout_s)
        self.encoder, self.decoder, self.cfg = encoder, decoder, cfg

    def check_available(self) -> None:
        find_program(self.encoder)
        find_program(self.decoder)
        if self.cfg is not None and not Path(self.cfg).is_file():
            raise AnchorError(f"{self.name}: configuration file {self.cfg} not found")

    def _encode_yuv(self, src: Path, width: int, height: int, q: float, tmp: Path) -> tuple[bytes, dict]:
        self.check_available()
        exe, out = find_program(self.encoder), tmp / "out.266"
        cfg = ["-c", str(Path(self.cfg).resolve())] if self.cfg else []
        r = run_tool([exe, *cfg, f"--InputFile={src}", f"--SourceWidth={width}", f"--SourceHeight={height}",
                      "--FrameRate=1", "--FramesToBeEncoded=1", f"--InputBitDepth={self.input_bit_depth}",
                      f"--InternalBitDepth={self.coded_bit_depth}", "--InputChromaFormat=420", f"--QP={int(q)}",
                      "--IntraPeriod=1", "--GOPSize=1", "--IntraQPOffset=0", "--AccessUnitDelimiter=0",
                      "--SEIDecodedPictureHash=0", "--ConformanceWindowMode=1", f"--BitstreamFile={out}"],
                     timeout=self.timeout_s, cwd=tmp)
        return read_output(out, exe), self._check_qp(r.stdout + r.stderr, q)

    def _decode_yuv(self, data: bytes, tmp: Path) -> bytes:
        stream, out = tmp / "stream.266", tmp / "decoded.yuv"
        stream.write_bytes(data)
        run_tool([find_program(self.decoder), "-b", stream, "-o", out, "-d", self.coded_bit_depth],
                 timeout=self.timeout_s, cwd=tmp)
        return read_output(out, str(self.decoder))
