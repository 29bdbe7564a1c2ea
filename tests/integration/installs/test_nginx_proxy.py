"""The deployed proxy pair: deploy/nginx/provisioner.conf in a real nginx in front of a real daphne started as
deploy/systemd/provisioner-web.service starts it (--proxy-headers), on loopback. A client that sends its own
X-Forwarded-For must be audited under the address it really came from, on the machines' plain-HTTP server
(/i/, /api/agent/) and on the people's TLS server alike.

The client connects from 127.0.0.2, so its real address differs from nginx's and daphne's (127.0.0.1).
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.db import connection

from audit.models import AuditEntry
from installs import tokens
from installs.models import Install
from tests.conftest import make_user
from tests.integration.installs.test_http import facts
from tests.servers import stop

ROOT = Path(__file__).resolve().parents[3]
NGINX = Path("/usr/sbin/nginx")
SITE = ROOT / "deploy" / "nginx" / "provisioner.conf"
UNIT = ROOT / "deploy" / "systemd" / "provisioner-web.service"
CLIENT = "127.0.0.2"  # where the requests really come from
FORGED = "198.51.100.7"  # what they claim in X-Forwarded-For

pytestmark = pytest.mark.skipif(not NGINX.exists(), reason="nginx is not installed (Debian package nginx-light)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} never opened: {log.read_text()[-2000:]}")


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def site_config(tmp: Path, daphne_port: int, http_port: int, tls_port: int) -> str:
    """The deployed site with only its addresses, ports and file paths moved to the test's; every proxy
    directive is the file's own."""
    cert, key = self_signed(tmp)
    text = SITE.read_text()
    replacements = [
        (r"server 127\.0\.0\.1:8001;", f"server 127.0.0.1:{daphne_port};"),
        (r"listen 443 ssl;", f"listen 127.0.0.1:{tls_port} ssl;"),
        (r"listen 80;", f"listen 127.0.0.1:{http_port};"),
        (r"ssl_certificate +\S+;", f"ssl_certificate {cert};"),
        (r"ssl_certificate_key +\S+;", f"ssl_certificate_key {key};"),
        (r"alias /opt/provisioner/var/static/;", f"alias {tmp}/static/;"),
    ]
    for pattern, value in replacements:
        text, count = re.subn(pattern, value, text)
        assert count == 1, f"{pattern} not found once in {SITE}"
    return text


def daphne_command(port: int) -> list[str]:
    """The unit's ExecStart, with this interpreter and port."""
    exec_start = next(line for line in UNIT.read_text().splitlines() if line.startswith("ExecStart="))
    argv = shlex.split(exec_start.removeprefix("ExecStart="))
    assert argv[1:3] == ["-m", "config.serve"] and "--proxy-headers" in argv
    argv[0] = sys.executable
    argv[argv.index("-p") + 1] = str(port)
    return argv


@pytest.fixture
def proxied(tmp_path):
    """(plain-HTTP port, TLS port) of nginx in front of daphne."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "PROVISIONER_DEV": "1",
        "DEBUG": "0",
        "PROVISIONER_VAR_DIR": str(settings.VAR_DIR),
    }
    daphne_port, http_port, tls_port = free_port(), free_port(), free_port()
    daphne_log = tmp_path / "daphne.log"
    daphne = subprocess.Popen(
        daphne_command(daphne_port), cwd=ROOT, env=env, stdout=daphne_log.open("ab"), stderr=subprocess.STDOUT
    )
    prefix = tmp_path / "nginx"
    (prefix / "logs").mkdir(parents=True)
    (prefix / "site.conf").write_text(site_config(tmp_path, daphne_port, http_port, tls_port))
    temp = "".join(f"    {kind}_temp_path {prefix}/{kind};\n" for kind in ("client_body", "proxy"))
    (prefix / "nginx.conf").write_text(
        f"daemon off;\npid {prefix}/nginx.pid;\nerror_log {prefix}/logs/error.log;\nevents {{}}\n"
        f"http {{\n    access_log off;\n{temp}    include {prefix}/site.conf;\n}}\n"
    )
    nginx_log = prefix / "logs" / "stderr.log"
    nginx = subprocess.Popen(
        [str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
        stdout=nginx_log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    try:
        wait_port(daphne_port, daphne, daphne_log)
        wait_port(http_port, nginx, nginx_log)
        wait_port(tls_port, nginx, nginx_log)
        yield http_port, tls_port
    finally:
        stop(nginx)
        stop(daphne)


def request(port: int, method: str, path: str, *, tls: bool = False, body: bytes | None = None, headers=None):
    """From CLIENT, claiming to be FORGED."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, source_address=(CLIENT, 0), context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30, source_address=(CLIENT, 0))
    try:
        headers = {"Host": "localhost", "X-Forwarded-For": FORGED, **(headers or {})}
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read(), response.headers
    finally:
        conn.close()


def test_a_forged_x_forwarded_for_is_never_the_audited_source_address(lab, proxied):
    http_port, tls_port = proxied
    installer = lab.install([lab.machine()])
    machine = lab.machine()
    image = lab.install([machine], lab.image_profile())
    lab.run_jobs()

    boot = tokens.boot_token(Install.objects.get(pk=installer.pk).token_nonce)
    status, body, _ = request(http_port, "GET", f"/i/{boot}/preseed.cfg")
    assert status == 200 and b"d-i " in body
    used = AuditEntry.objects.get(action="install.boot_credential_used", object_id=str(installer.pk))
    assert used.source_ip == CLIENT

    image_boot = tokens.boot_token(Install.objects.get(pk=image.pk).token_nonce)
    hello = json.dumps(facts(machine.pxe_nic.mac)).encode()
    headers = {"Authorization": f"Bearer {image_boot}", "Content-Type": "application/json"}
    status, body, _ = request(http_port, "POST", "/api/agent/v1/register", body=hello, headers=headers)
    assert status == 200, body
    assert AuditEntry.objects.get(action="agent.register", object_id=str(image.pk)).source_ip == CLIENT

    # People, over TLS: a failed login is audited under the address it came from.
    make_user("dora", password="correct horse battery staple")
    status, page, headers = request(tls_port, "GET", "/login/", tls=True)
    csrf = re.search(r"csrftoken=([^;]+)", headers.get("Set-Cookie", "")).group(1)
    form = f"csrfmiddlewaretoken={csrf}&username=dora&password=wrong".encode()
    status, answer, _ = request(
        tls_port,
        "POST",
        "/login/",
        tls=True,
        body=form,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={csrf}",
            "Origin": "https://localhost",  # as a browser sends it
            "Referer": "https://localhost/login/",
        },
    )
    assert status == 200, re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", answer.decode()))[-800:]
    assert AuditEntry.objects.get(action="auth.login_failed").source_ip == CLIENT

    assert not AuditEntry.objects.filter(source_ip=FORGED).exists()


def test_every_proxying_location_overwrites_the_address_headers_daphne_trusts():
    """The rule the test above proves, for every location of the file, including /ws/ (not audited today)."""
    text = re.sub(r"#.*", "", SITE.read_text())
    locations = re.findall(r"location [^{]*\{(.*?)\n    \}", text, re.S)
    proxying = [body for body in locations if "proxy_pass" in body]
    assert len(proxying) == 3
    for body in proxying:
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in body
        assert "proxy_set_header X-Forwarded-Port $remote_port;" in body
    assert "$proxy_add_x_forwarded_for" not in text


def test_discovery_judges_the_address_nginx_saw_not_the_one_claimed(lab, proxied):
    """Discovery decides on the source address alone: a forged X-Forwarded-For must neither let an outsider in nor
    keep a machine on the provisioning network out (its path is on the machines' plain-HTTP server)."""
    http_port, _ = proxied
    lab.site.discovery, lab.site.provisioning_networks = True, f"{CLIENT}/32"
    lab.site.memory_os = lab.image_profile()
    lab.site.save()
    mac = "52:54:00:d1:5c:42"
    hello = json.dumps({"mac": mac, "key": "ab" * 32, "facts": facts(mac)}).encode()
    headers = {"Content-Type": "application/json"}
    status, body, _ = request(http_port, "POST", "/api/v1/discovery/register", body=hello, headers=headers)
    assert status == 200, body
    assert AuditEntry.objects.get(action="discovery.registered").source_ip == CLIENT
    lab.site.provisioning_networks = f"{FORGED}/32"
    lab.site.save()
    status, body, _ = request(http_port, "POST", "/api/v1/discovery/register", body=hello, headers=headers)
    assert status == 403 and json.loads(body)["reason"] == "NotProvisioningAddress", body
