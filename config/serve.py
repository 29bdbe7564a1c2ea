"""Run daphne with install tokens masked in its access log: `python -m config.serve -b 127.0.0.1 -p 8000`.

Takes daphne's own arguments; the application defaults to config.asgi:application.
"""

import sys

from daphne import http_protocol
from daphne.cli import CommandLineInterface

from core.redaction import RedactingStream


class RawBodyRequest(http_protocol.WebRequest):
    """Daphne's request without Twisted's form parsing. Twisted would parse every POST's Content-Type
    with the email package and a form body into request.args, which daphne never reads (the ASGI app
    gets the raw body, and Django parses forms itself): about 15 % of the CPU of an agent progress
    report, and a second copy of every large form upload in memory."""

    def __init__(self, *args, **kwargs):
        kwargs["parsePOSTFormSubmission"] = False
        super().__init__(*args, **kwargs)


def use_raw_bodies() -> None:
    http_protocol.WebRequest = RawBodyRequest  # daphne's HTTPFactory builds its requests from this name


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not any(a.endswith(":application") for a in argv):
        argv.append("config.asgi:application")
    sys.stdout = RedactingStream(sys.stdout)
    use_raw_bodies()
    CommandLineInterface().run(argv)


if __name__ == "__main__":
    main()
