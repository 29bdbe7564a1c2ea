"""PXE boot configs (pxelinux, GRUB, iPXE) per MAC and installer answer files. No Django here.

Public API:
  BootEntry, Loader, render, tftp_path, render_ipxe_local      -- boot configs (pure)
  write, write_all, remove, write_defaults                      -- the site's TFTP root (atomic)
  install_context, render_template, kernel_cmdline, Method,
  StaticAddress, TemplateError,
  ANSWER_FILES, answer_files, answer_file_named                 -- installer answer files (which method serves which)
                                                                   (rendered within provisioner.pxe.sandbox's bounds)
  Layout, provisioner.pxe.storage                               -- one disk layout, rendered for each installer
  normalise_mac                                                 -- one spelling for every MAC
  provisioner.pxe.stock.STOCK_PROFILES                          -- stock OS profiles as plain dicts
"""

from provisioner.pxe.answers import (
    ANSWER_FILES,
    AnswerFile,
    Method,
    StaticAddress,
    answer_file_named,
    answer_files,
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
from provisioner.pxe.storage import Layout
from provisioner.pxe.tftp import remove, write, write_all, write_defaults

__all__ = [
    "ANSWER_FILES",
    "AnswerFile",
    "BootEntry",
    "Layout",
    "Loader",
    "Method",
    "StaticAddress",
    "TemplateError",
    "answer_file_named",
    "answer_files",
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
