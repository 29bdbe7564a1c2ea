#!/usr/bin/env python3
"""Install a profile on every machine of one rack through provisioner's REST API, wait for the installs to end,
and say how each one ended. Standard library only: copy it anywhere Python 3.9+ runs.

    export PROVISIONER_TOKEN=prv_...          # an API token of a technician (Account > API tokens)
    ./install-rack.py --url https://provisioner.example.net lab/r1 debian-12-preseed

It lists the rack's machines (GET /api/v1/machines?site=&rack=, page by page), starts one batch for them
(POST /api/v1/batches, admitted under the batch's caps with a power-on stagger), then polls the batch's
installs (GET /api/v1/installs?batch=) until every one has ended or the deadline passes.

Exit status: 0 every install succeeded; 1 one or more failed or were cancelled; 2 the request was refused
(bad token, unknown rack or profile, a machine already being installed: the reason is printed); 3 the
deadline passed with installs still running (they go on; see them on the Installs page).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

ENDED = {"succeeded", "failed", "cancelled"}
PER_PAGE = 1000  # the API's largest page


class Refused(Exception):
    """The API said no: an HTTP error, with the problem document's sentence."""


class Api:
    def __init__(self, url: str, token: str, timeout_s: float = 30):
        self.base = url.rstrip("/") + "/api/v1/"
        self.headers = {"Authorization": f"Token {token}", "Accept": "application/json"}
        self.timeout_s = timeout_s

    def call(self, method: str, path: str, params: dict | None = None, body: dict | None = None) -> dict:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = json.dumps(body).encode() if body is not None else None
        headers = {**self.headers, **({"Content-Type": "application/json"} if data is not None else {})}
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            raise Refused(f"{method} {path}: {exc.code} {_problem(exc)}") from None
        except urllib.error.URLError as exc:
            raise Refused(f"{method} {path}: cannot reach {self.base}: {exc.reason}") from None

    def every(self, path: str, params: dict) -> list[dict]:
        """Every row of a list, page by page (each list answers {count, page, per_page, results})."""
        rows, page = [], 1
        while True:
            answer = self.call("GET", path, {**params, "page": page, "per_page": PER_PAGE})
            rows += answer["results"]
            if not answer["results"] or len(rows) >= answer["count"]:
                return rows
            page += 1


def _problem(exc: urllib.error.HTTPError) -> str:
    """The problem document's detail and reasons (RFC 9457), or the body's first line."""
    text = exc.read().decode("utf-8", "replace")
    try:
        problem = json.loads(text)
    except ValueError:
        return text.strip().splitlines()[0] if text.strip() else exc.reason
    reasons = problem.get("problems") or []
    return problem.get("detail", "") + "".join(f"\n  - {r}" for r in reasons if r not in problem.get("detail", ""))


def install_rack(api: Api, rack: str, profile: str, *, deadline_s: float, poll_s: float, out=sys.stdout) -> int:
    site, _, rack_name = rack.partition("/")
    if not site or not rack_name:
        raise Refused(f"{rack!r}: give the rack as site/rack, e.g. lab/r1")
    machines = api.every("machines", {"site": site, "rack": rack_name})
    if not machines:
        raise Refused(f"no machine in rack {rack}")
    hostnames = [m["hostname"] for m in machines]
    print(f"{rack}: {len(hostnames)} machine(s): {', '.join(hostnames)}", file=out)

    batch = api.call("POST", "batches", body={"machines": hostnames, "profile": profile, "name": f"{rack} {profile}"})
    print(f"batch {batch['id']} started: {len(batch['installs'])} install(s) of {profile}", file=out, flush=True)

    deadline = time.monotonic() + deadline_s
    seen: dict[int, str] = {}
    while True:
        installs = api.every("installs", {"batch": batch["id"]})
        for install in installs:
            if seen.get(install["id"]) != install["state"]:
                seen[install["id"]] = install["state"]
                print(f"  {install['machine']}: {install['state']}", file=out, flush=True)
        running = [i for i in installs if i["state"] not in ENDED]
        if not running:
            break
        if time.monotonic() >= deadline:
            print(f"deadline passed: {len(running)} install(s) still running", file=out)
            _outcomes(installs, out)
            return 3
        time.sleep(poll_s)

    _outcomes(installs, out)
    failed = [i for i in installs if i["state"] != "succeeded"]
    print(f"{len(installs) - len(failed)} succeeded, {len(failed)} did not", file=out)
    return 1 if failed else 0


def _outcomes(installs: list[dict], out) -> None:
    for i in sorted(installs, key=lambda i: i["machine"]):
        why = f" {i['failure_reason']}: {i['failure_message']}" if i["failure_reason"] else ""
        print(f"{i['machine']:<24} install {i['id']:<8} {i['state']}{why}", file=out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rack", help="site/rack, e.g. lab/r1")
    parser.add_argument("profile", help="the OS profile to install, e.g. debian-12-preseed")
    parser.add_argument("--url", required=True, help="provisioner's address, e.g. https://provisioner.example.net")
    parser.add_argument(
        "--token",
        default=os.environ.get("PROVISIONER_TOKEN", ""),
        help="an API token; better given as PROVISIONER_TOKEN, where other users' ps cannot see it",
    )
    parser.add_argument("--deadline", type=float, default=3600, help="seconds to wait for the installs (3600)")
    parser.add_argument("--poll", type=float, default=5, help="seconds between looks at the installs (5)")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("no token: set PROVISIONER_TOKEN or pass --token")
    try:
        return install_rack(Api(args.url, args.token), args.rack, args.profile, deadline_s=args.deadline,
                            poll_s=args.poll)  # fmt: skip
    except Refused as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
