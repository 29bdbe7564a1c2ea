"""Write → fetch over real TFTP → remove: the files are exactly what a PXE client would receive."""

from provisioner.pxe import kernel_cmdline, remove, write_all, write_defaults
from provisioner.pxe.bootconfig import render_grub_default, render_pxelinux_default

MAC = "52:54:00:ab:cd:ef"
PXELINUX_NAME = "pxelinux.cfg/01-52-54-00-ab-cd-ef"
GRUB_NAME = "grub/grub.cfg-01-52-54-00-ab-cd-ef"


def test_write_fetch_remove_leaves_local_boot(tftp_server):
    root = tftp_server.root
    write_defaults(root)
    cmdline = kernel_cmdline("image", mac=MAC, base_url="http://127.0.0.1:8000", token="tok-0123456789abcdef")
    paths = write_all(
        root, mac=MAC.upper(), kernel="/images/memory-os/vmlinuz", initrd="/images/memory-os/initrd", cmdline=cmdline
    )

    for name, path in zip((PXELINUX_NAME, GRUB_NAME), paths, strict=True):
        content, output = tftp_server.get(name)
        assert content == path.read_bytes(), output
        assert b"provisioner.token=tok-0123456789abcdef" in content
    pxelinux, _ = tftp_server.get(PXELINUX_NAME)
    assert pxelinux.startswith(b"SERIAL 0 115200\n") and b"IPAPPEND 2" in pxelinux
    grub, _ = tftp_server.get(GRUB_NAME)
    assert b"BOOTIF=01-52-54-00-ab-cd-ef" in grub

    # pxelinux asks in lower case only; an upper-case name finds nothing, so the writer must never rely on it.
    upper, output = tftp_server.get(PXELINUX_NAME.upper().replace("PXELINUX.CFG", "pxelinux.cfg"))
    assert upper is None and "Error code" in output

    assert {p.name for p in remove(root, MAC)} == {PXELINUX_NAME.split("/")[1], GRUB_NAME.split("/")[1]}
    for name in (PXELINUX_NAME, GRUB_NAME):
        content, output = tftp_server.get(name)
        assert content is None, f"{name} still served after remove"
        assert "File not found" in output or "Error code 1" in output, output

    # What the machine falls back to now: the defaults, which boot the local disk.
    default, _ = tftp_server.get("pxelinux.cfg/default")
    assert default == render_pxelinux_default().encode()
    assert b"LOCALBOOT 0" in default and b"KERNEL" not in default
    grub_default, _ = tftp_server.get("grub/grub.cfg")
    assert grub_default == render_grub_default().encode()
    assert b"exit 1" in grub_default and b"linux " not in grub_default


def test_rewrite_while_serving_gives_whole_files(tftp_server):
    # An install re-armed with a new token: the server must hand out the new file, complete.
    root = tftp_server.root
    for token in ("tok-aaaaaaaaaaaaaaaa", "tok-bbbbbbbbbbbbbbbb"):
        cmdline = kernel_cmdline("image", mac=MAC, base_url="http://127.0.0.1:8000", token=token)
        [pxelinux_path, _] = write_all(root, mac=MAC, kernel="/k", initrd="/i", cmdline=cmdline)
        content, output = tftp_server.get(PXELINUX_NAME)
        assert content == pxelinux_path.read_bytes(), output
        assert f"provisioner.token={token}".encode() in content and content.endswith(b"IPAPPEND 2\n")
