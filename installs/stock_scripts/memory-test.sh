#!/bin/sh
# description: Tests memory with memtester (argument 1: how many MiB, default 256; one loop of every test) and fails on any error memtester reports.
# timeout_s: 3600
# safe_to_repeat: true
#
# Sandbox mode (PROVISIONER_SANDBOX=<machine dir>): memtester tests 4 MiB of the lab host's memory (the host is
# shared by every lab machine, and its memory is not the machine's); a lab host without memtester is said so and
# passes.
set -u

mib=${1:-256}
case $mib in
    ''|*[!0-9]*|0) echo "argument 1 must be a whole number of MiB (at least 1), not '$mib'"; exit 2 ;;
esac

if ! command -v memtester >/dev/null; then
    if [ -n "${PROVISIONER_SANDBOX:-}" ]; then
        echo "sandbox: memtester is not installed on this host: memory not tested; passed"
        exit 0
    fi
    echo "memtester is not installed in the memory OS"
    exit 1
fi

if [ -n "${PROVISIONER_SANDBOX:-}" ] && [ "$mib" -gt 4 ]; then
    echo "sandbox: 4 MiB of the lab host's memory instead of $mib MiB"
    mib=4
fi

# memtester locks what it tests: more than the memory OS can spare would push it into swapless exhaustion.
available=$(awk '/^MemAvailable:/ {print int($2 / 1024)}' /proc/meminfo)
if [ -n "$available" ] && [ "$mib" -gt $((available - 64)) ]; then
    echo "$mib MiB is more than this machine can spare now ($available MiB available, 64 MiB kept back)"
    exit 1
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT
echo "memtester ${mib}M, 1 loop"
memtester "${mib}M" 1 >"$out" 2>&1
status=$?
# memtester redraws its progress in place with backspaces: the log wants what a terminal would show at the end.
awk '{
    line = ""; at = 0
    for (i = 1; i <= length($0); i++) {
        c = substr($0, i, 1)
        if (c == "\b") { if (at > 0) at--; continue }
        line = substr(line, 1, at) c substr(line, at + 2); at++
    }
    sub(/[ \t]+$/, "", line)
    if (line != "") print line
}' "$out"
# Its exit status is a bit mask: 1 memory could not be had, 2 the stuck address test failed, 4 another test failed.
if [ "$status" -ne 0 ]; then
    why=""
    [ $((status & 1)) -ne 0 ] && why="$why; memory could not be allocated or locked"
    [ $((status & 2)) -ne 0 ] && why="$why; the stuck address test failed"
    [ $((status & 4)) -ne 0 ] && why="$why; a pattern test failed"
    echo "FAILED: memtester exit status $status${why}"
    exit 1
fi
echo "$mib MiB tested without error"
