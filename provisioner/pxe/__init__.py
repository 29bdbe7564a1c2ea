"""PXE boot configs (pxelinux, GRUB, iPXE) per MAC and installer answer files. No Django here.

Public API:
  BootEntry, Loader, render, tftp_path, render_ipxe_local      -- boot configs (pure)
  DiscoveryBoot, discovery_cmdline, render_local,
  render_ipxe_discover                                          -- discovery of unknown machines (pure)
  write, write_all, remove, write_defaults                      -- the site's TFTP root (atomic)
  sync_defaults, write_local, ensure_local, remove_local,
  local_macs                                                    -- known MACs' local-boot files (discovery)
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
    discovery_cmdline,
    install_context,
    install_urls,
    kernel_cmdline,
    render_template,
)
from provisioner.pxe.bootconfig import (
    BootEntry,
    DiscoveryBoot,
    Loader,
    render,
    render_grub_default,
    render_ipxe_discover,
    render_ipxe_local,
    render_local,
    render_pxelinux_default,
    tftp_path,
)
from provisioner.pxe.mac import normalise_mac
from provisioner.pxe.sandbox import TemplateError
from provisioner.pxe.storage import Layout
from provisioner.pxe.tftp import (
    ensure_local,
    local_macs,
    remove,
    remove_local,
    sync_defaults,
    write,
    write_all,
    write_defaults,
    write_local,
)

__all__ = [
    "ANSWER_FILES",
    "AnswerFile",
    "BootEntry",
    "DiscoveryBoot",
    "Layout",
    "Loader",
    "Method",
    "StaticAddress",
    "TemplateError",
    "answer_file_named",
    "answer_files",
    "discovery_cmdline",
    "ensure_local",
    "install_context",
    "install_urls",
    "kernel_cmdline",
    "local_macs",
    "normalise_mac",
    "remove",
    "remove_local",
    "render",
    "render_grub_default",
    "render_ipxe_discover",
    "render_ipxe_local",
    "render_local",
    "render_pxelinux_default",
    "render_template",
    "sync_defaults",
    "tftp_path",
    "write",
    "write_all",
    "write_defaults",
    "write_local",
]
