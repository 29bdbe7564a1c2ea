"""The relays of a simulated Tripp Lite PDU, for snmpsim's subprocess variation module.

Tripp Lite's MIB has a write-only command column and a separate state column, which snmpsim's writecache
cannot link: this script keeps each outlet's state in a file, so a SET of the command changes what a GET of
the state reads, as on the real PDU. Called as ``pdu_relay.py DIR command|state SETFLAG OID VALUE``.
"""

import sys
from pathlib import Path

TURN_OFF, TURN_ON, CYCLE = 1, 2, 3
OFF, ON = 1, 2


def main(directory: str, column: str, set_flag: str, oid: str, value: str) -> str:
    path = Path(directory) / oid.rsplit(".", 1)[1]
    if column == "state":
        return path.read_text() if path.exists() else str(OFF)
    if set_flag == "1":
        command = int(value)
        if command not in (TURN_OFF, TURN_ON, CYCLE):
            raise SystemExit(1)  # snmpsim answers an error, as the PDU refuses an unknown command
        path.write_text(str(OFF if command == TURN_OFF else ON))
        return value
    return "0"  # idle: the command column reads back as no command pending


if __name__ == "__main__":
    sys.stdout.write(main(*sys.argv[1:6]))
