"""SSH in the lab through the project's own client chain (access.transport): the lab's jump host forwards only to
the lab machines' SSH, and a machine's sshd answers only while its installed OS runs, authenticating with the files
its install left in target/ as OpenSSH would."""

from __future__ import annotations

import asyncio
import time

import asyncssh
import pytest

from access import checks, errors, transport
from provisioner.bmc import BootDevice
from provisioner.lab.image import demo_image_bytes
from provisioner.lab.machine import LabMachine
from provisioner.lab.ssh import JumpHost
from tests.integration.access.sshd import free_port
from tests.integration.lab.conftest import MACS, driver

ADDRESS = "127.77.250.1"
TIMEOUT = 5


def _key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def _private(key: asyncssh.SSHKey) -> str:
    return key.export_private_key().decode()


def _public(key: asyncssh.SSHKey) -> str:
    return key.export_public_key().decode().strip()


@pytest.fixture
def lab_ssh(make_machine):
    """An installed machine booted from its disk, its sshd on ADDRESS, and a jump host that reaches it."""
    port = free_port()
    machine: LabMachine = make_machine(ssh_address=ADDRESS, ssh_port=port)
    machine.disk.write_bytes(demo_image_bytes(4096))  # a bootable OS on the disk, as write_image leaves it
    (machine.target / "etc").mkdir(parents=True, exist_ok=True)
    (machine.target / "etc" / "hostname").write_text("lab01\n")
    jump_client = _key()
    jump = JumpHost(
        "127.0.0.1", 0, _key(), "jump", _public(jump_client), lambda host, p: (host, p) == (ADDRESS, port)
    ).start()
    bmc = driver(machine)
    bmc.set_boot_device(BootDevice.DISK, once=False)
    bmc.power_on()
    machine.wait_for("sshd")
    hop = transport.Endpoint(
        "jump host", "127.0.0.1", jump.port, "jump", _private(jump_client), (jump.host_key.convert_to_public(),)
    )
    yield machine, jump, hop, port
    jump.stop()


def _target(machine: LabMachine, port: int, key: asyncssh.SSHKey, user: str = "root") -> transport.Endpoint:
    host_key = asyncssh.read_public_key(machine.target / "etc/ssh/ssh_host_ed25519_key.pub")
    return transport.Endpoint("lab01", ADDRESS, port, user, _private(key), (host_key,))


async def _run(hop, target, command: str) -> transport.Output:
    conns = await transport.open_chain([hop], connect_timeout=TIMEOUT)
    try:
        connected = await transport.connect_target(target, tunnel=conns[-1], connect_timeout=TIMEOUT)
        async with connected.conn:
            return await transport.run(connected.conn, command, timeout_s=TIMEOUT, max_output=1 << 20)
    finally:
        await transport.close_all(conns)


def _authorize(machine: LabMachine, key: asyncssh.SSHKey) -> None:
    ssh = machine.target / "root" / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True)
    (ssh / "authorized_keys").write_text(f"{_public(key)} someone@lab\n")


def test_a_key_in_authorized_keys_logs_in_and_the_install_check_passes(lab_ssh):
    machine, _, hop, port = lab_ssh
    key = _key()
    _authorize(machine, key)
    expected = {"hostname": "lab01", "mac": MACS[0], "ip": ADDRESS, "prefix": 8, "root_disk": "/dev/sda"}
    output = asyncio.run(_run(hop, _target(machine, port, key), checks.script(expected)))
    assert output.exit_status == 0, output.output
    results = checks.evaluate(checks.parse(output.output.decode()), expected)
    assert [c.name for c in results] == ["hostname", "nic", "root_disk"]
    assert all(c.ok for c in results), results
    assert "ssh-keygen" in machine.phases()  # the host key was made at this first boot

    # Anything else: refused, as sshd refuses a key it does not list.
    with pytest.raises(errors.TargetAuthFailed):
        asyncio.run(_run(hop, _target(machine, port, _key()), "true"))
    with pytest.raises(errors.TargetAuthFailed):
        asyncio.run(_run(hop, _target(machine, port, key, user="nobody"), "true"))


def test_the_jump_host_forwards_only_to_lab_machines_and_has_no_shell(lab_ssh):
    machine, jump, hop, port = lab_ssh
    elsewhere = transport.Endpoint(
        "elsewhere", "127.0.0.1", jump.port, "root", _private(_key()), (jump.host_key.convert_to_public(),)
    )
    with pytest.raises(errors.TargetUnreachable, match="administratively prohibited|not allowed"):
        asyncio.run(_run(hop, elsewhere, "true"))
    assert jump.refused == [("127.0.0.1", jump.port)]

    async def shell_on_the_jump_host():
        conns = await transport.open_chain([hop], connect_timeout=TIMEOUT)
        try:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conns[0].run("hostname")
        finally:
            await transport.close_all(conns)

    asyncio.run(shell_on_the_jump_host())


def _sign(ca: asyncssh.SSHKey, user: asyncssh.SSHKey, principals: list[str], valid: tuple = ("-1m", "+5m")):
    return ca.generate_user_certificate(user, "alice", principals=principals, valid_after=valid[0],
                                        valid_before=valid[1])  # fmt: skip


def test_certificates_signed_by_the_trusted_ca_log_in_as_their_principal_only(lab_ssh):
    machine, _, hop, port = lab_ssh
    ca, other_ca, user = _key(), _key(), _key()
    ssh_dir = machine.target / "etc" / "ssh"
    (ssh_dir / "provisioner-user-ca.pub").write_text(_public(other_ca) + "\n" + _public(ca) + "\n")
    host_key = asyncssh.read_public_key(ssh_dir / "ssh_host_ed25519_key.pub")

    async def login(cert) -> str:
        conns = await transport.open_chain([hop], connect_timeout=TIMEOUT)
        try:
            async with asyncssh.connect(
                ADDRESS, port, tunnel=conns[0], username="root", client_keys=[(user, cert)],
                known_hosts=([host_key], [], []), agent_path=None, config=None, connect_timeout=TIMEOUT,
            ) as conn:  # fmt: skip
                return (await conn.run("whoami", check=True)).stdout
        finally:
            await transport.close_all(conns)

    good = _sign(ca, user, ["root"])
    # Not trusted until the drop-in names the file: the agent's ssh_keys task writes both.
    with pytest.raises(asyncssh.PermissionDenied):
        asyncio.run(login(good))
    (ssh_dir / "sshd_config.d").mkdir()
    (ssh_dir / "sshd_config.d" / "50-provisioner-user-ca.conf").write_text(
        "TrustedUserCAKeys /etc/ssh/provisioner-user-ca.pub\n"
    )
    assert asyncio.run(login(good)) == "root\n"
    refused = {
        "wrong principal": _sign(ca, user, ["alice"]),
        "no principal": _sign(ca, user, []),
        "expired": _sign(ca, user, ["root"], valid=(int(time.time()) - 600, int(time.time()) - 60)),
        "untrusted CA": _sign(_key(), user, ["root"]),
    }
    for why, cert in refused.items():
        with pytest.raises(asyncssh.PermissionDenied):
            asyncio.run(login(cert))
            pytest.fail(f"logged in with a certificate: {why}")


def test_an_interactive_shell_and_power_off_drops_it(lab_ssh):
    machine, _, hop, port = lab_ssh
    key = _key()
    _authorize(machine, key)

    async def session():
        conns = await transport.open_chain([hop], connect_timeout=TIMEOUT)
        connected = await transport.connect_target(_target(machine, port, key), tunnel=conns[0],
                                                    connect_timeout=TIMEOUT)  # fmt: skip
        process = await connected.conn.create_process(term_type="xterm", term_size=(80, 24))

        async def until(text: str) -> str:
            seen = ""
            while text not in seen:
                seen += await asyncio.wait_for(process.stdout.read(4096), TIMEOUT)
            return seen

        assert "root@lab01:~# " in await until("# ")
        process.stdin.write("hostnaX\x7fme\r")
        shown = await until("# ")
        assert "hostnaX\b \bme\r\nlab01\r\nroot@lab01:~# " in shown
        process.stdin.write("nosuch\r")
        assert "sh: nosuch: command not found" in await until("# ")
        process.stdin.write("half a line\x03")
        assert "^C\r\n" in await until("# ")

        driver(machine).power_off()  # a power cut: the connection is lost, nobody says goodbye
        await asyncio.wait_for(connected.conn.wait_closed(), TIMEOUT)
        await transport.close_all(conns)
        with pytest.raises(errors.TargetUnreachable):
            await _run(hop, _target(machine, port, key), "true")

    asyncio.run(session())
    assert "sshd-stopped" in machine.phases()


def test_a_reboot_keeps_the_host_key_and_a_reinstall_makes_a_new_one(lab_ssh):
    machine, *_ = lab_ssh
    public = machine.target / "etc" / "ssh" / "ssh_host_ed25519_key.pub"
    first = public.read_text()
    bmc = driver(machine)
    bmc.power_off()
    machine.wait_for("power-off")
    bmc.power_on()
    machine.wait_for("sshd", count=2)
    assert public.read_text() == first
    bmc.power_off()
    machine.wait_for("power-off", count=2)
    machine.disk.write_bytes(demo_image_bytes(4096))  # a reinstall writes the disk anew
    bmc.power_on()
    machine.wait_for("sshd", count=3)
    assert public.read_text() != first and machine.phases().count("ssh-keygen") == 2
