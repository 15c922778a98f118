#!/usr/bin/env bash
# ab.sh: CPU per operation of two or more builds of tlsedge, alternating on
# one workload, and each build's ratio to the first, round by round. For a
# change whose effect (a few %) is smaller than this machine's drift from
# one minute to the next, which the side by side of compare.sh cannot show.
#
#   REVS="0b49411 HEAD" MODE=nc bash cmd/tlsedge-load/ab.sh
#   REVS="0b49411 HEAD 0b49411" ...   the first build twice: its two copies'
#                                      ratio is the noise (a control)
#   make ab REVS="main~3 main" MODE=http
#
# Settings (environment) [default]:
#   REVS [HEAD~1 HEAD]  git revisions, built with `git archive` (the tree's
#                       own files are not used); the same one may repeat
#   MODE [nc]           nc: new passthrough connections (handshake, 8 at a
#                       time); ka: passthrough keep-alive echo (64 bytes, 16
#                       connections); http: terminate keep-alive GETs (16);
#                       rhttp: the same through reencrypt; hs: new terminated
#                       connections, a GET each (8)
#   ROUNDS [5]  D [4s]  THREADS [1] (GOMAXPROCS)  KEEP [0]
#
# tlsedge logs to a file, as in compare.sh. Per run: the CPU ticks of the
# tlsedge process (/proc/PID/stat, user and system) over the operations the
# client counted. Everything listens on 127.0.0.1 and is killed at the end.
set -euo pipefail

REVS=${REVS:-HEAD~1 HEAD}
MODE=${MODE:-nc}
ROUNDS=${ROUNDS:-5}
D=${D:-4s}
THREADS=${THREADS:-1}
KEEP=${KEEP:-0}
SRC=head PIN=0 QUIET_PCT=15 QUIET_MAX=3
SNI=bench.tlsedge.test
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-ab.XXXXXX)
# shellcheck source=cmd/tlsedge-load/lib.sh
source "$ROOT/cmd/tlsedge-load/lib.sh"

case $MODE in
nc | ka | http | rhttp | hs) ;;
*) echo "MODE=$MODE: want nc, ka, http, rhttp or hs" >&2; exit 2 ;;
esac

# The builds: one binary per revision (a repeated one is built once).
mkdir -p "$TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/tlsedge-load" ./cmd/tlsedge-load)
LOAD=$TMP/bin/tlsedge-load
read -r -a revs <<<"$REVS"
((${#revs[@]} >= 2)) || { echo "REVS: give two revisions or more" >&2; exit 2; }
for rev in "${revs[@]}"; do
	id=$(git -C "$ROOT" rev-parse --short "$rev^{commit}" 2>/dev/null) || { echo "REVS: $rev is not a commit" >&2; exit 2; }
	[[ -x $TMP/bin/tlsedge-$id ]] && continue
	say "building $rev ($id)"
	mkdir -p "$TMP/src-$id"
	git -C "$ROOT" archive "$id" | tar -x -C "$TMP/src-$id"
	(cd "$TMP/src-$id" && go build -o "$TMP/bin/tlsedge-$id" ./cmd/tlsedge)
done

PKI=$TMP/pki
"$LOAD" -pki "$PKI" -sni "$SNI" 2>/dev/null
BP=$(free_port) PP=$(free_port) TP=$(free_port)
start_server() { # start_server NAME ARGS...: a tlsedge-load server
	local name=$1
	shift
	"$LOAD" "$@" -d 3h 2>"$TMP/$name.log" &
	PIDS+=($!)
}
start_server echo -serve "127.0.0.1:$BP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem" -client-ca "$PKI/ca.pem"
start_server plain -serve-http "127.0.0.1:$PP"
start_server tlsback -serve-http "127.0.0.1:$TP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem"
wait_port "$BP" "echo server" "$TMP/echo.log"
wait_port "$PP" "plain HTTP server" "$TMP/plain.log"
wait_port "$TP" "HTTPS server" "$TMP/tlsback.log"

PT=$(free_port) TE=$(free_port) RE=$(free_port)
mkdir -p "$TMP/tlsedge" # a folder of its own: tlsedge watches its config's folder
{
	cat <<EOF
log:
  level: info
  format: json
  access: true
certs:
  storage: $TMP/certmagic
listeners:
EOF
	edge_listener pt "$PT" passthrough echo
	edge_listener term "$TE" terminate plain
	edge_listener reenc "$RE" reencrypt tlsback
	echo "backends:"
	edge_backend echo "$BP"
	edge_backend plain "$PP"
	edge_backend tlsback "$TP" "ca: $PKI/ca.pem" "server_name: $SNI"
} >"$TMP/tlsedge/tlsedge.yaml"

COMMON=(-sni "$SNI" -ca "$PKI/ca.pem" -cert "$PKI/client.pem" -key "$PKI/client-key.pem" -tls 1.3 -curve X25519 -json)
case $MODE in
nc) port=$PT work=(-mode handshake -c 8) ;;
ka) port=$PT work=(-mode echo -c 16 -size 64) ;;
http) port=$TE work=(-mode http -c 16) ;;
rhttp) port=$RE work=(-mode http -c 16) ;;
hs) port=$TE work=(-mode handshake-http -c 8) ;;
esac
warm=(-mode echo -c 4 -size 64)
[[ $port != "$PT" ]] && warm=(-mode http -c 4)

# run REV: one run of REV's build; prints its CPU µs per operation.
run() {
	local id pid t0 t1 ops
	id=$(git -C "$ROOT" rev-parse --short "$1^{commit}")
	env GOMAXPROCS="$THREADS" "$TMP/bin/tlsedge-$id" run -c "$TMP/tlsedge/tlsedge.yaml" 2>>"$TMP/tlsedge-$id.log" &
	pid=$!
	trap 'kill "$pid" 2>/dev/null || true' EXIT # run is a subshell ($(run ...)): cleanup does not see pid
	wait_port "$port" "tlsedge $id" "$TMP/tlsedge-$id.log"
	"$LOAD" -addr "127.0.0.1:$port" "${COMMON[@]}" "${warm[@]}" -d 1s >/dev/null 2>&1 || true
	quiet
	t0=$(ticks "$pid")
	"$LOAD" -addr "127.0.0.1:$port" "${COMMON[@]}" "${work[@]}" -d "$D" >"$TMP/out.json" 2>"$TMP/out.log"
	t1=$(ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	ops=$(jq -r .ops "$TMP/out.json")
	((ops > 0)) || { say "tlsedge $id: no operations ($(tail -1 "$TMP/out.log"))"; exit 1; }
	awk -v t=$((t1 - t0)) -v hz="$HZ" -v ops="$ops" 'BEGIN { printf "%.1f", t * 1e6 / hz / ops }'
}

need jq jq
say "MODE=$MODE D=$D ROUNDS=$ROUNDS THREADS=$THREADS: CPU µs per operation of tlsedge, and / the first ($REVS)"
ratios=()
for r in $(seq 1 "$ROUNDS"); do
	line="round $r:" first=""
	i=0
	for rev in "${revs[@]}"; do
		c=$(run "$rev")
		if [[ -z $first ]]; then
			first=$c
			line+=" $rev $c"
		else
			ratio=$(awk -v a="$c" -v b="$first" 'BEGIN { printf "%.2f", a / b }')
			line+=" | $rev $c ($ratio)"
			ratios[i]+="$ratio "
		fi
		i=$((i + 1))
	done
	echo "$line"
done
i=0
for rev in "${revs[@]}"; do
	if ((i > 0)); then
		echo "$rev / ${revs[0]}, median of the rounds: $(tr ' ' '\n' <<<"${ratios[i]}" | grep . | sort -n |
			awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
	fi
	i=$((i + 1))
done
