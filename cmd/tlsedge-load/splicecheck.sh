#!/usr/bin/env bash
# splicecheck.sh: prove that tlsedge's passthrough moves bytes with splice(2),
# not read/write through user space. tlsedge runs under strace during a
# throughput load; the script prints strace's syscall summary (-c) and, from a
# second, fully traced run, the bytes each syscall moved next to the bytes the
# load pushed through.
#
#   bash cmd/tlsedge-load/splicecheck.sh
#
# Knobs: D [5s] length of the summary run (the byte-counting run takes 3s),
# C [2] connections, SIZE [64MiB] bytes per connection, SRC [tree] as in
# compare.sh, KEEP [0]. Installs strace when missing. Everything listens on
# 127.0.0.1 and is killed when the script exits.
set -euo pipefail

D=${D:-5s}
C=${C:-2}
SIZE=${SIZE:-64MiB}
SRC=${SRC:-tree}
KEEP=${KEEP:-0}
SNI=echo.tlsedge.test
TRACE=splice,read,write,writev,sendfile

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-splice.XXXXXX)
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	if [[ $KEEP == 1 ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { echo "== $*" >&2; }

if ! command -v strace >/dev/null; then
	say "installing strace"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null
fi

BUILD=$ROOT
if [[ $SRC == head ]]; then
	BUILD=$TMP/src
	mkdir -p "$BUILD"
	git -C "$ROOT" archive HEAD | tar -x -C "$BUILD"
	rm -rf "$BUILD/cmd/tlsedge-load"
	cp -r "$ROOT/cmd/tlsedge-load" "$BUILD/cmd/"
fi
(cd "$BUILD" && go build -o "$TMP/bin/tlsedge" ./cmd/tlsedge && go build -o "$TMP/bin/tlsedge-load" ./cmd/tlsedge-load)
LOAD=$TMP/bin/tlsedge-load
"$LOAD" -pki "$TMP/pki" -sni "$SNI" 2>/dev/null

listening() { ss -Hltn "sport = :$1" | grep -q .; }
wait_port() {
	local _
	for _ in $(seq 1 100); do listening "$1" && return; sleep 0.1; done
	say "nothing listens on $1"
	exit 1
}
port() { echo $((10000 + RANDOM % 22000)); }
BP=$(port)
EP=$((BP + 1))

"$LOAD" -serve "127.0.0.1:$BP" -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" \
	-client-ca "$TMP/pki/ca.pem" -d 10m 2>"$TMP/echo.log" &
PIDS+=("$!")
wait_port "$BP"

# The config gets a folder of its own: tlsedge watches the config's folder,
# and the traces written next to it would show up as inotify reads.
mkdir -p "$TMP/cfg" "$TMP/out"
cat >"$TMP/cfg/tlsedge.yaml" <<EOF
log:
  level: warn
  access: false
listeners:
  - name: bench
    address: "127.0.0.1:$EP"
    routes:
      - sni: ["$SNI"]
        mode: passthrough
        backend: echo
backends:
  - name: echo
    servers:
      - address: "127.0.0.1:$BP"
    health:
      type: none
EOF

# traced DURATION STRACE-ARGS...: run tlsedge under strace during one
# throughput load, then stop tlsedge (SIGTERM to it, not to strace) so strace
# writes its output.
traced() {
	local dur=$1
	shift
	strace -f "$@" -e trace="$TRACE" "$TMP/bin/tlsedge" run -c "$TMP/cfg/tlsedge.yaml" 2>>"$TMP/out/tlsedge.log" &
	local st=$!
	PIDS+=("$st")
	wait_port "$EP"
	timeout -k 5 330 "$LOAD" -mode throughput -addr "127.0.0.1:$EP" -sni "$SNI" -ca "$TMP/pki/ca.pem" \
		-cert "$TMP/pki/client.pem" -key "$TMP/pki/client-key.pem" -c "$C" -size "$SIZE" -d "$dur" -json >"$TMP/out/load.json"
	local child
	child=$(pgrep -P "$st" -x tlsedge || true)
	[[ -n $child ]] && kill -TERM "$child"
	wait "$st" || true
	while listening "$EP"; do sleep 0.1; done
}

say "summary run: strace -f -c -e trace=$TRACE tlsedge, $C x throughput for $D"
traced "$D" -c -o "$TMP/out/summary.txt"
echo "load: $(jq -r '"\(.mb_per_sec | floor) MB/s echoed, \(.bytes) bytes echoed (the same went up: \(2 * .bytes) through tlsedge)"' "$TMP/out/load.json")"
echo
cat "$TMP/out/summary.txt"

say "byte-counting run: strace -f -e trace=$TRACE, 3s"
traced 3s -o "$TMP/out/trace.txt"
echo
echo "bytes moved per syscall by tlsedge (sum of return values); the load echoed $(jq -r .bytes "$TMP/out/load.json") bytes,"
echo "so tlsedge carried twice that, and splice counts every byte twice (socket to pipe, pipe to socket);"
echo "read and write(v) include start-up (the config, /proc), the ClientHello peek and its replay:"
# With -f, a call another thread interrupts is split into "name(... <unfinished ...>"
# and "<... name resumed>...) = N"; count it where its result is.
awk '
	/<unfinished \.\.\.>/ { next }
	{
		name = ""
		if (match($0, /<\.\.\. [a-z]+ resumed>/)) name = substr($0, RSTART + 5, RLENGTH - 14)
		else if (match($0, /^(\[pid +)?[0-9]+\]? +[a-z]+\(/)) { name = substr($0, RSTART, RLENGTH - 1); sub(/.* /, "", name) }
		if (name == "" || !match($0, /\) += -?[0-9]+/)) next
		ret = substr($0, RSTART, RLENGTH); sub(/.*= /, "", ret)
		if (ret + 0 < 0) errs[name]++; else { calls[name]++; bytes[name] += ret }
	}
	END {
		printf "%-10s %10s %16s %8s\n", "syscall", "ok calls", "bytes", "errors"
		for (k in calls) printf "%-10s %10d %16.0f %8d\n", k, calls[k], bytes[k], errs[k]
		for (k in errs) if (!(k in calls)) printf "%-10s %10d %16d %8d\n", k, 0, 0, errs[k]
	}' "$TMP/out/trace.txt"
