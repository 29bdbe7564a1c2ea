#!/bin/sh
# description: Runs a short SMART self-test on every disk that has SMART (ATA and SAS through smartctl, NVMe through nvme-cli), waits for all of them, and fails naming each disk whose test failed. Disks without SMART are reported and pass.
# timeout_s: 1200
# safe_to_repeat: true
#
# Sandbox mode (PROVISIONER_SANDBOX=<machine dir>): the disks are DIR/disks/*.img, which have no SMART unless
# DIR/machine.json declares it.
set -u

# How long the tests may run: a short self-test takes about two minutes; some drives take ten.
WAIT_S=${SMART_WAIT_S:-900}
POLL_S=${SMART_POLL_S:-10}

if [ -n "${PROVISIONER_SANDBOX:-}" ]; then
    # A disk image has no SMART, unless machine.json declares some for it ("disks": {"sda": {"smart":
    # {"available": true, "passed": false, "detail": ".."}}}): the lab's way to show a failing disk.
    python3 -c '
import json, os, sys
root = sys.argv[1]
try:
    declared = json.load(open(os.path.join(root, "machine.json"))).get("disks", {})
except FileNotFoundError:
    declared = {}
failed = []
images = sorted(n for n in os.listdir(os.path.join(root, "disks")) if n.endswith(".img"))
for image in images:
    name = image[: -len(".img")]
    smart = (declared.get(name) or {}).get("smart") or {}
    if not smart.get("available"):
        print("%s: a sandbox disk image has no SMART: no self-test, passed" % name)
    elif smart.get("passed") is False:
        print("%s: short self-test FAILED: %s" % (name, smart.get("detail") or "declared failing in machine.json"))
        failed.append(name)
    else:
        print("%s: short self-test passed" % name)
if failed:
    print("FAILED: " + " ".join(failed))
    sys.exit(1)
print("sandbox: %d disk(s), every one with SMART passed" % len(images))
' "$PROVISIONER_SANDBOX"
    exit
fi

# Whole disks an OS could be installed on, as the agent's facts list them.
disks() {
    for entry in /sys/block/*; do
        name=${entry##*/}
        case $name in loop*|ram*|zram*|dm-*|md*|sr*|nbd*|fd*|rbd*) continue ;; esac
        [ "$(cat "$entry/removable" 2>/dev/null)" = 1 ] && continue
        [ "$(cat "$entry/size" 2>/dev/null || echo 0)" -gt 0 ] || continue
        echo "$name"
    done
}

# One of: running, passed, "failed: <why>".
ata_status() {
    value=$(smartctl -c "/dev/$1" 2>&1 | sed -n 's/^Self-test execution status:[^(]*( *\([0-9][0-9]*\)).*/\1/p')
    if [ -z "$value" ]; then
        echo "failed: smartctl -c shows no self-test status"
        return
    fi
    # The high nibble is the status: 0 done without error, 15 running, 1 and 2 aborted, 3 to 8 a failure.
    case $((value >> 4)) in
        15) echo running ;;
        0) echo passed ;;
        1|2) echo "failed: the self-test was aborted (status $value)" ;;
        *) echo "failed: the self-test reports a failure (status $value)" ;;
    esac
}

scsi_status() {
    out=$(smartctl -l selftest "/dev/$1" 2>&1)
    if printf '%s\n' "$out" | grep -q "% of test remaining"; then
        echo running
        return
    fi
    row=$(printf '%s\n' "$out" | grep -m 1 '^# *1 ')
    case $row in
        *"in progress"*) echo running ;;
        *"segment failed"*|*Failed*|*Aborted*|*"Unknown error"*) echo "failed: $row" ;;
        *Completed*) echo passed ;;
        *) echo "failed: no self-test result in the log" ;;
    esac
}

nvme_status() {
    out=$(nvme self-test-log "/dev/$1" 2>&1)
    operation=$(printf '%s\n' "$out" | sed -n 's/^Current operation *: *//p')
    if [ -z "$operation" ]; then
        echo "failed: nvme self-test-log: $(printf '%s\n' "$out" | tail -n 1)"
        return
    fi
    if [ "$operation" != 0 ]; then
        echo running
        return
    fi
    # The newest result comes first: 0 completed without error, 0xf an empty entry, anything else a failure.
    result=$(printf '%s\n' "$out" | sed -n 's/^ *Operation Result *: *\([0-9a-fx]*\).*/\1/p' | head -n 1)
    case $result in
        0) echo passed ;;
        0xf|"") echo "failed: the drive recorded no self-test result" ;;
        *) echo "failed: operation result $result" ;;
    esac
}

start_nvme() {
    oacs=$(nvme id-ctrl "/dev/$1" 2>/dev/null | sed -n 's/^oacs *: *//p')
    # OACS bit 4: the controller supports the device self-test command.
    if [ -z "$oacs" ] || [ $((oacs & 16)) -eq 0 ]; then
        echo "$1: NVMe without device self-test: no self-test, passed"
        return 1
    fi
    if ! out=$(nvme device-self-test "/dev/$1" --self-test-code=1 2>&1); then
        echo "$1: cannot start a self-test: $out"
        failed="$failed $1"
        return 1
    fi
}

start_smartctl() {
    info=$(smartctl -i "/dev/$1" 2>&1)
    if ! printf '%s\n' "$info" | grep -Eq "SMART support is:[[:space:]]+Available"; then
        echo "$1: no SMART: no self-test, passed"
        return 1
    fi
    if ! printf '%s\n' "$info" | grep -Eq "SMART support is:[[:space:]]+Enabled"; then
        smartctl -s on "/dev/$1" >/dev/null 2>&1
    fi
    if ! out=$(smartctl -t short "/dev/$1" 2>&1); then
        echo "$1: cannot start a self-test: $(printf '%s\n' "$out" | tail -n 1)"
        failed="$failed $1"
        return 1
    fi
}

for tool in smartctl nvme; do
    command -v "$tool" >/dev/null || { echo "$tool is not installed in the memory OS"; exit 1; }
done

failed=""
running=""
for disk in $(disks); do
    case $disk in
        nvme*) start_nvme "$disk" && running="$running $disk:nvme" ;;
        *)
            if start_smartctl "$disk"; then
                if smartctl -c "/dev/$disk" 2>&1 | grep -q "^Self-test execution status:"; then
                    running="$running $disk:ata"
                else
                    running="$running $disk:scsi"
                fi
            fi
            ;;
    esac
done
[ -n "$running" ] && echo "short self-test started on:$(printf '%s' "$running" | sed 's/:[a-z]*//g')"

waited=0
while [ -n "$running" ]; do
    sleep "$POLL_S"
    waited=$((waited + POLL_S))
    still=""
    for entry in $running; do
        disk=${entry%%:*}
        status=$("${entry##*:}_status" "$disk")
        case $status in
            running)
                if [ "$waited" -ge "$WAIT_S" ]; then
                    echo "$disk: the self-test did not finish within $WAIT_S s"
                    failed="$failed $disk"
                else
                    still="$still $entry"
                fi
                ;;
            passed) echo "$disk: short self-test passed" ;;
            *) echo "$disk: short self-test FAILED: ${status#failed: }"; failed="$failed $disk" ;;
        esac
    done
    running=$still
    [ -n "$running" ] && echo "after ${waited} s still testing:$(printf '%s' "$running" | sed 's/:[a-z]*//g')"
done

if [ -n "$failed" ]; then
    echo "FAILED:$failed"
    exit 1
fi
echo "every disk with SMART passed its short self-test"
