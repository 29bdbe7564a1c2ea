"""PXE boot configs (pxelinux, GRUB, iPXE) per MAC and installer answer files. No Django here.

Public API:
  BootEntry, Loader, render, tftp_path, render_ipxe_local      -- boot configs (pure)
  write, write_all, remove, write_defaults                      -- the site's TFTP root (atomic)
  install_context, render_template, kernel_cmdline, Method,
  StaticAddress, TemplateError, ANSWER_FILES                    -- installer answer files
                                                                   (rendered within provisioner.pxe.sandbox's bounds)
  normalise_mac                                                 -- one spelling for every MAC
  provisioner.pxe.stock.STOCK_PROFILES                          -- stock OS profiles as plain dicts
"""

from provisioner.pxe.answers import (
    Method,
    StaticAddress,
    install_context,
    install_urls,
    kernel_cmdline,
    render_template,
)
from provisioner.pxe.bootconfig import (
    BootEntry,
    Loader,
    render,
    render_grub_default,
    render_ipxe_local,
    render_pxelinux_default,
    tftp_path,
)
from provisioner.pxe.mac import normalise_mac
from provisioner.pxe.sandbox import TemplateError
from provisioner.pxe.tftp import remove, write, write_all, write_defaults

# The file name each method's installer fetches from /i/<token>/.
ANSWER_FILES = {
    Method.PRESEED: ("preseed.cfg",),
    Method.KICKSTART: ("ks.cfg",),
    Method.AUTOINSTALL: ("user-data", "meta-data"),
    Method.IMAGE: (),
}

__all__ = [
    "ANSWER_FILES",
    "BootEntry",
    "Loader",
    "Method",
    "StaticAddress",
    "TemplateError",
    "install_context",
    "install_urls",
    "kernel_cmdline",
    "normalise_mac",
    "remove",
    "render",
    "render_grub_default",
    "render_ipxe_local",
    "render_pxelinux_default",
    "render_template",
    "tftp_path",
    "write",
    "write_all",
    "write_defaults",
]
