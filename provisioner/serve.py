"""Run daphne with install tokens masked in its access log: `python -m provisioner.serve -b 127.0.0.1 -p 8000`.

Takes daphne's own arguments; the application defaults to provisioner.asgi:application.
"""

import sys

from daphne.cli import CommandLineInterface

from provisioner.redaction import RedactingStream


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.endswith(":application") for a in argv):
        argv.append("provisioner.asgi:application")
    sys.stdout = RedactingStream(sys.stdout)
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main()
