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
#   REVS [HEAD~1 HEAD]  git revisions, built with `git archive`; the same one
#                       may repeat. tlsedge-load, lib.sh and the config come
#                       from the working tree: every build must take the
#                       config (checked with validate before the first round)
#   MODE [nc]           nc: new passthrough connections (handshake, 8 at a
#                       time); ka: passthrough keep-alive echo (64 bytes, 16
#                       connections); http: terminate keep-alive GETs (16);
#                       rhttp: the same through reencrypt; hs: new terminated
#                       connections, a GET each (8)
#   ROUNDS [5]  D [4s]  THREADS [1] (GOMAXPROCS)  KEEP [0]
#
# tlsedge logs to a file, as in compare.sh. Per run: the CPU ticks of the
# tlsedge process (/proc/PID/stat, user and system) over the operations the
# client counted; a run whose load fails, or whose tlsedge ends, ends the
# script. Each round starts one build later than the one before. Everything
# listens on 127.0.0.1 and is killed at the end.
set -euo pipefail

REVS=${REVS:-HEAD~1 HEAD}
MODE=${MODE:-nc}
ROUNDS=${ROUNDS:-5}
D=${D:-4s}
THREADS=${THREADS:-1}
KEEP=${KEEP:-0}
SRC=head PIN=0 QUIET_PCT=15 QUIET_MAX=3
SNI=bench.tlsedge.test
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-ab.XXXXXX)
# shellcheck source=cmd/tlsedge-load/lib.sh
source "$ROOT/cmd/tlsedge-load/lib.sh"

case $MODE in
nc | ka | http | rhttp | hs) ;;
*) echo "MODE=$MODE: want nc, ka, http, rhttp or hs" >&2; exit 2 ;;
esac
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "ROUNDS=$ROUNDS: want 1 or more" >&2; exit 2; }
need jq jq
need ss iproute2

# The builds: one binary per revision (a repeated one is built once).
mkdir -p "$TMP/bin"
(cd "$ROOT" && go build -o "$TMP/bin/tlsedge-load" ./cmd/tlsedge-load)
LOAD=$TMP/bin/tlsedge-load
read -r -a revs <<<"$REVS"
((${#revs[@]} >= 2)) || { echo "REVS: give two revisions or more" >&2; exit 2; }
ids=() # each revision's commit, resolved once
for rev in "${revs[@]}"; do
	id=$(git -C "$ROOT" rev-parse --short "$rev^{commit}" 2>/dev/null) || { echo "REVS: $rev is not a commit" >&2; exit 2; }
	ids+=("$id")
done
for id in "${ids[@]}"; do
	[[ -x $TMP/bin/tlsedge-$id ]] && continue
	say "building $id"
	mkdir -p "$TMP/src-$id"
	git -C "$ROOT" archive "$id" | tar -x -C "$TMP/src-$id"
	(cd "$TMP/src-$id" && go build -o "$TMP/bin/tlsedge-$id" ./cmd/tlsedge)
done

PKI=$TMP/pki
"$LOAD" -pki "$PKI" -sni "$SNI" 2>/dev/null
BP=$(free_port) PP=$(free_port) TP=$(free_port)
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

for id in "${ids[@]}"; do # every build takes this config (an older one may refuse a key)
	"$TMP/bin/tlsedge-$id" validate -c "$TMP/tlsedge/tlsedge.yaml" >/dev/null ||
		{ say "tlsedge $id refuses the config $TMP/tlsedge/tlsedge.yaml"; exit 1; }
done

# run ID: one run of build ID; prints its CPU µs per operation. A subshell
# ($(run ...)): set -e does not hold in it, so each failure exits by hand.
run() {
	local id=$1 t0 t1 ops # pid is not local: the EXIT trap reads it
	env GOMAXPROCS="$THREADS" "$TMP/bin/tlsedge-$id" run -c "$TMP/tlsedge/tlsedge.yaml" 2>>"$TMP/tlsedge-$id.log" &
	pid=$!
	trap '[[ -n $pid ]] && kill "$pid" 2>/dev/null; true' EXIT # cleanup does not see pid
	wait_port "$port" "tlsedge $id" "$TMP/tlsedge-$id.log"
	"$LOAD" -addr "127.0.0.1:$port" "${COMMON[@]}" "${warm[@]}" -d 1s >/dev/null 2>&1 || true
	quiet
	t0=$(ticks "$pid")
	if ! "$LOAD" -addr "127.0.0.1:$port" "${COMMON[@]}" "${work[@]}" -d "$D" >"$TMP/out.json" 2>"$TMP/out.log"; then
		say "tlsedge $id: the load failed ($(tail -1 "$TMP/out.log"))"
		exit 1
	fi
	[[ -d /proc/$pid ]] || { say "tlsedge $id ended during its run; its log: $TMP/tlsedge-$id.log"; exit 1; }
	t1=$(ticks "$pid")
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	pid=""
	ops=$(jq -r .ops "$TMP/out.json")
	((ops > 0 && t1 > t0)) || { say "tlsedge $id: $ops operations, $((t1 - t0)) ticks ($(tail -1 "$TMP/out.log"))"; exit 1; }
	awk -v t=$((t1 - t0)) -v hz="$HZ" -v ops="$ops" 'BEGIN { printf "%.1f", t * 1e6 / hz / ops }'
}

# Each round starts one build later (round 2: the second build first, and
# so on): a position's own effect (the run after another is often slower)
# spreads over the builds. Ratios are to the first build's run of the same
# round.
n=${#revs[@]}
say "MODE=$MODE D=$D ROUNDS=$ROUNDS THREADS=$THREADS: CPU µs per operation of tlsedge, and / the first ($REVS = ${ids[*]})"
ratios=()
for r in $(seq 1 "$ROUNDS"); do
	cpu=()
	for k in $(seq 0 $((n - 1))); do
		i=$(((r - 1 + k) % n))
		cpu[i]=$(run "${ids[i]}")
	done
	line="round $r (ran first: #$(((r - 1) % n + 1)) ${revs[(r - 1) % n]}):"
	for i in $(seq 0 $((n - 1))); do
		if ((i == 0)); then
			line+=" ${revs[0]} ${cpu[0]}"
		else
			ratio=$(awk -v a="${cpu[i]}" -v b="${cpu[0]}" 'BEGIN { printf "%.3f", a / b }')
			line+=" | ${revs[i]} ${cpu[i]} ($ratio)"
			ratios[i]+="$ratio "
		fi
	done
	echo "$line"
done
for i in $(seq 1 $((n - 1))); do
	echo "${revs[i]} / ${revs[0]}, median of the rounds: $(tr ' ' '\n' <<<"${ratios[i]}" | grep . | sort -n |
		awk '{ v[NR] = $1 } END { printf "%.3f\n", (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }')"
done
