#!/bin/sh
# description: Reads the first MiB of every disk (argument 1: how many MiB, default 256) past the page cache, prints each disk's read speed in MB/s, and fails naming each disk that gave a read error.
# timeout_s: 1800
# safe_to_repeat: true
#
# Sandbox mode (PROVISIONER_SANDBOX=<machine dir>): the disks are DIR/disks/*.img.
set -u

mib=${1:-256}
case $mib in
    ''|*[!0-9]*|0) echo "argument 1 must be a whole number of MiB (at least 1), not '$mib'"; exit 2 ;;
esac

uptime_s() { cut -d ' ' -f 1 /proc/uptime; }

# Whole disks an OS could be installed on, as the agent's facts list them: "<name> <path> <bytes>".
disks() {
    if [ -n "${PROVISIONER_SANDBOX:-}" ]; then
        for image in "$PROVISIONER_SANDBOX"/disks/*.img; do
            [ -e "$image" ] || continue
            echo "$(basename "$image" .img) $image $(stat -c %s "$image")"
        done
        return
    fi
    for entry in /sys/block/*; do
        name=${entry##*/}
        case $name in loop*|ram*|zram*|dm-*|md*|sr*|nbd*|fd*|rbd*) continue ;; esac
        [ "$(cat "$entry/removable" 2>/dev/null)" = 1 ] && continue
        sectors=$(cat "$entry/size" 2>/dev/null || echo 0)
        [ "$sectors" -gt 0 ] || continue
        echo "$name /dev/$name $((sectors * 512))"
    done
}

# Direct I/O measures the disk, not the page cache; an image file on tmpfs cannot do it.
direct=iflag=direct
[ -n "${PROVISIONER_SANDBOX:-}" ] && direct=""

failed=""
count=0
errors=$(mktemp)
trap 'rm -f "$errors" "$errors.list"' EXIT
disks >"$errors.list"
while read -r name path bytes; do
    count=$((count + 1))
    wanted=$((mib * 1048576))
    [ "$bytes" -lt "$wanted" ] && wanted=$bytes
    began=$(uptime_s)
    # shellcheck disable=SC2086
    if ! dd if="$path" of=/dev/null bs=1M count="$mib" $direct 2>"$errors"; then
        echo "$name: READ ERROR: $(grep -v -e 'records in' -e 'records out' -e 'copied' "$errors" | tail -n 1)"
        failed="$failed $name"
        continue
    fi
    ended=$(uptime_s)
    echo "$name $began $ended $wanted" | awk '{
        seconds = $3 - $2; if (seconds < 0.01) seconds = 0.01
        printf "%s: read %d MiB in %.2f s: %.0f MB/s\n", $1, $4 / 1048576, seconds, $4 / 1000000 / seconds }'
done <"$errors.list"

if [ "$count" -eq 0 ]; then
    echo "no disk found"
    exit 1
fi
if [ -n "$failed" ]; then
    echo "FAILED: read errors on:$failed"
    exit 1
fi
echo "$count disk(s) read without error"
