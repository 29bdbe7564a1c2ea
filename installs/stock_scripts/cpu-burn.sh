#!/bin/sh
# description: Keeps every CPU core busy for argument 1 seconds (default 60), then checks that each core is still online and was busy to the end, and prints the load. Fails naming a core that went offline or idle, or a busy loop that died.
# timeout_s: 3900
# safe_to_repeat: true
#
# Sandbox mode (PROVISIONER_SANDBOX=<machine dir>): the lab host is shared by every lab machine, so one core is
# burnt for at most 5 seconds: enough to show the test run, not enough to starve the lab.
set -u

seconds=${1:-60}
case $seconds in
    ''|*[!0-9]*|0) echo "argument 1 must be a whole number of seconds (at least 1), not '$seconds'"; exit 2 ;;
esac
[ "$seconds" -le 3600 ] || { echo "argument 1: at most 3600 seconds, not $seconds"; exit 2; }

online_before=$(cat /sys/devices/system/cpu/online)
cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc)
if [ -n "${PROVISIONER_SANDBOX:-}" ]; then
    cores=1
    [ "$seconds" -gt 5 ] && seconds=5
    echo "sandbox: one core of the lab host for $seconds s"
fi
pids=""
i=0
while [ "$i" -lt "$cores" ]; do
    (while :; do :; done) &
    pids="$pids $!"
    i=$((i + 1))
done
# shellcheck disable=SC2086
trap 'kill $pids 2>/dev/null' EXIT
trap 'exit 1' INT TERM
echo "$cores busy loops running for $seconds s (CPUs online: $online_before)"

# The last seconds are measured per core from /proc/stat: busy = everything but idle and iowait.
window=2
[ "$seconds" -lt 4 ] && window=1
before=$(mktemp)
after=$(mktemp)
trap 'kill $pids 2>/dev/null; rm -f "$before" "$after"' EXIT
left=$((seconds - window))
while [ "$left" -gt 0 ]; do
    step=30
    [ "$left" -lt "$step" ] && step=$left
    sleep "$step"
    left=$((left - step))
    [ "$left" -gt 0 ] && echo "$((seconds - window - left)) s: load $(cut -d ' ' -f 1-3 /proc/loadavg)"
done
grep '^cpu[0-9]' /proc/stat >"$before"
sleep "$window"
grep '^cpu[0-9]' /proc/stat >"$after"

failed=""
for pid in $pids; do
    kill -0 "$pid" 2>/dev/null || failed="$failed busy-loop-$pid-died"
done
# shellcheck disable=SC2086
kill $pids 2>/dev/null

report=$(awk 'NR == FNR { for (i = 2; i <= NF; i++) t0[$1] += $i; idle0[$1] = $5 + $6; next }
    { total = 0; for (i = 2; i <= NF; i++) total += $i
      busy = total - t0[$1] - ($5 + $6 - idle0[$1])
      pct = (total > t0[$1]) ? 100 * busy / (total - t0[$1]) : 0
      printf "%s %.0f\n", $1, pct }' "$before" "$after")
printf '%s\n' "$report" | while read -r cpu pct; do
    echo "$cpu: ${pct}% busy"
done
# A shared lab host runs one loop on whichever core is free: no core can be held to it there.
if [ -z "${PROVISIONER_SANDBOX:-}" ]; then
    idle=$(printf '%s\n' "$report" | awk '$2 < 50 { printf " %s", $1 }')
    [ -n "$idle" ] && failed="$failed idle:$idle"
fi
online_after=$(cat /sys/devices/system/cpu/online)
[ "$online_after" = "$online_before" ] || failed="$failed CPUs-online-changed:$online_before->$online_after"
echo "load average: $(cut -d ' ' -f 1-3 /proc/loadavg)"

if [ -n "$failed" ]; then
    echo "FAILED:$failed"
    exit 1
fi
echo "all $cores cores stayed online and busy for $seconds s"
