"""Build the agent into one executable zipapp: `python -m provisioner.agent.build -o dist/provisioner-agent.pyz`.

The archive holds only `provisioner/agent` (standard library only) and an empty `provisioner/__init__.py`, so
the memory OS needs nothing but python3.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import zipapp
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
MAIN = "import sys\n\nfrom provisioner.agent.cli import main\n\nsys.exit(main())\n"


def build(output: Path, interpreter: str = "/usr/bin/env python3") -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp) / "app"
        shutil.copytree(
            PACKAGE_DIR, staging / "provisioner" / "agent", ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
        (staging / "provisioner" / "__init__.py").write_text("")
        (staging / "__main__.py").write_text(MAIN)
        output.parent.mkdir(parents=True, exist_ok=True)
        zipapp.create_archive(staging, output, interpreter=interpreter, compressed=True)
    return output


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("dist/provisioner-agent.pyz"))
    parser.add_argument("--python", default="/usr/bin/env python3", help="interpreter line of the archive")
    args = parser.parse_args(argv)
    print(build(args.output, args.python))
    return 0


if __name__ == "__main__":
    sys.exit(main())
