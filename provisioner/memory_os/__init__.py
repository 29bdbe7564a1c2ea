"""The memory OS: a Debian kernel and an initramfs whose busybox /init unpacks a minimal Debian root into tmpfs,
switch_roots, brings up the BOOTIF NIC by MAC with DHCP and runs the agent. No Django here.

  build.py        debootstrap, strip, kernel modules, agent zipapp, pack; cache by inputs; publish to a TFTP root
  cpio.py         the newc cpio writer for the initramfs
  packages.txt    the root's Debian packages
  init            stage 1, busybox, in the initramfs
  stage2          stage 2, /sbin/provisioner-init in the root
  udhcpc.script   applies a DHCP lease with ip(8)
"""
