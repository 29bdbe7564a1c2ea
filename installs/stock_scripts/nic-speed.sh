#!/bin/sh
# description: Checks that every NIC with link runs at least at argument 1 Mb/s (for example 10000) and prints each NIC's speed. Fails naming each slower NIC or one whose speed is unknown, and when no NIC has link.
# timeout_s: 60
# safe_to_repeat: true
#
# Sandbox mode (PROVISIONER_SANDBOX=<machine dir>): the NICs, their link and speed are DIR/machine.json's "nics".
set -u

expected=${1:-}
case $expected in
    ''|*[!0-9]*|0) echo "argument 1 must be the expected speed in Mb/s (a whole number, at least 1), not '$expected'"
                   exit 2 ;;
esac

# "<name> <link 1|0> <speed in Mb/s, -1 when unknown>" per physical NIC.
nics() {
    if [ -n "${PROVISIONER_SANDBOX:-}" ]; then
        python3 -c '
import json, sys
try:
    machine = json.load(open(sys.argv[1]))
except FileNotFoundError:
    machine = {}
for i, nic in enumerate(machine.get("nics", [])):
    print(nic.get("name") or "eth%d" % i, 1 if nic.get("link", True) else 0, nic.get("speed_mbps") or -1)
' "$PROVISIONER_SANDBOX/machine.json"
        return
    fi
    for entry in /sys/class/net/*; do
        # Only physical NICs have a device link; bridges, bonds, VLANs and lo do not.
        [ -e "$entry/device" ] || continue
        carrier=$(cat "$entry/carrier" 2>/dev/null || echo 0)
        speed=$(cat "$entry/speed" 2>/dev/null || echo -1)
        echo "${entry##*/} $carrier ${speed:--1}"
    done
}

list=$(nics)
failed=""
linked=0
while read -r name link speed; do
    [ -n "$name" ] || continue
    if [ "$link" != 1 ]; then
        echo "$name: no link: not checked"
        continue
    fi
    linked=$((linked + 1))
    case $speed in
        ''|-*|*[!0-9]*)
            echo "$name: link up, speed unknown (the driver does not say): FAILED"
            failed="$failed $name" ;;
        *)
            if [ "$speed" -lt "$expected" ]; then
                echo "$name: link up at $speed Mb/s, slower than $expected Mb/s: FAILED"
                failed="$failed $name"
            else
                echo "$name: link up at $speed Mb/s (at least $expected Mb/s)"
            fi ;;
    esac
done <<EOF_NICS
$list
EOF_NICS

if [ "$linked" -eq 0 ]; then
    echo "FAILED: no NIC has link"
    exit 1
fi
if [ -n "$failed" ]; then
    echo "FAILED: slower than $expected Mb/s or speed unknown:$failed"
    exit 1
fi
echo "$linked NIC(s) with link, all at $expected Mb/s or more"
