"""Serial-console recordings are asciicast v2, written and read by core.asciicast (shared with SSH sessions)."""

from core.asciicast import HEIGHT, WIDTH, CastRecorder, read_cast

__all__ = ["HEIGHT", "WIDTH", "CastRecorder", "read_cast"]
