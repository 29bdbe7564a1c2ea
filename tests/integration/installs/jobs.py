"""Jobs the tests enqueue into real workers, with an effect a test can see from outside."""

from pathlib import Path


def touch(path: str) -> str:
    Path(path).write_text("ran")
    return path


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds
