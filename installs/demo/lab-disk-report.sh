#!/bin/sh
# What a commissioning script reports: the disks the agent sees.
echo "disk report for $(hostname)"
for d in "${PROVISIONER_SANDBOX:-}"/disks/*.img /sys/block/sd* /sys/block/nvme*; do
    [ -e "$d" ] && echo "  $(basename "$d"): $(wc -c <"$d" 2>/dev/null || cat "$d/size") bytes"
done
echo "done"
