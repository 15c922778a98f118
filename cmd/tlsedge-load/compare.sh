#!/usr/bin/env bash
# compare.sh: the same TLS load, direct to an echo server, through tlsedge
# (passthrough) and through HAProxy (standard SNI passthrough, without and
# with splice), in one run on this machine, then one table. For terminate
# mode (HTTPS with client certificates, tlsedge's HTTP proxy against HAProxy
# mode http) see compare-terminate.sh beside it.
#
#   bash cmd/tlsedge-load/compare.sh            # or: make compare
#   D=5s ROUNDS=3 SETUPS="direct tlsedge haproxy" bash cmd/tlsedge-load/compare.sh
#
# Knobs (environment, defaults in brackets):
#   D [10s]          duration of each run; 3 modes x 4 setups x ROUNDS runs
#                    (defaults: 12 runs, about 2.5 minutes in all)
#   ROUNDS [1]       repeat everything; the table shows the median of the rounds
#   TP_C [4]         throughput connections      SIZE [64MiB]   bytes per connection
#   HS_C [8]         handshake workers
#   ECHO_C [16]      echo connections            ECHO_SIZE [64] bytes per round trip
#   SETUPS ["direct tlsedge haproxy haproxy-splice"]
#   MODES ["throughput handshake echo"]
#   LOGS [1]         1: both balancers log one line per connection to a file
#                    (tlsedge's access log; HAProxy "option tcplog" to stdout);
#                    0: both silent
#   PIN [0]          0: no pinning: every process may use both cores, so a
#                    balancer's CPU comes out of the same budget as client and
#                    server (what one shared box sees). 1: taskset pins the
#                    balancer to CPU 1, the load and the echo server to CPU 0
#                    (the balancer as its own box; direct then gets one core).
#   SRC [tree]       tree: build the checkout as it is; head: build `git archive
#                    HEAD` plus this folder (when work in progress does not build)
#   QUIET_PCT [15] QUIET_MAX [3]
#                    before each run, wait up to QUIET_MAX seconds for the CPU
#                    use of everything else to fall under QUIET_PCT percent
#   KEEP [0]         1: keep the temp folder (configs, logs, JSON results)
#
# What runs: `tlsedge-load -serve` (TLS echo, client certificates required) is
# the one backend; every load is `tlsedge-load` with the same flags (mutual
# TLS 1.3, full handshakes; see main.go for the protocol). Within a round the
# setups take turns per mode, starting one later each round. Besides the
# client's figures the table shows the balancer's own CPU per unit of work
# (from /proc/PID/stat) and "other CPU": the share of both cores used by
# processes that are not part of the run; when it is high, the figures of that
# run are noise. Everything listens on 127.0.0.1, on free ports in
# 10000-32000; everything this script starts is killed when it exits.
set -euo pipefail

D=${D:-10s}
ROUNDS=${ROUNDS:-1}
TP_C=${TP_C:-4}
SIZE=${SIZE:-64MiB}
HS_C=${HS_C:-8}
ECHO_C=${ECHO_C:-16}
ECHO_SIZE=${ECHO_SIZE:-64}
SETUPS=${SETUPS:-direct tlsedge haproxy haproxy-splice}
MODES=${MODES:-throughput handshake echo}
LOGS=${LOGS:-1}
PIN=${PIN:-0}
SRC=${SRC:-tree}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_MAX=${QUIET_MAX:-3}
KEEP=${KEEP:-0}
SNI=echo.tlsedge.test

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-compare.XXXXXX)
# shellcheck source=lib.sh
source "$ROOT/cmd/tlsedge-load/lib.sh"

need haproxy haproxy
need jq jq
need ss iproute2

build
LOAD=$TMP/bin/tlsedge-load
"$LOAD" -pki "$TMP/pki" -sni "$SNI" 2>/dev/null

BP=$(free_port)  # echo server
EP=$(free_port)  # tlsedge
HP=$(free_port)  # haproxy
HSP=$(free_port) # haproxy with splice

# The echo backend; -d is a backstop should this script be killed hard.
$(cpu rest) "$LOAD" -serve "127.0.0.1:$BP" -cert "$TMP/pki/server.pem" -key "$TMP/pki/server-key.pem" \
	-client-ca "$TMP/pki/ca.pem" -d 30m 2>"$TMP/echo.log" &
ECHO_PID=$!
PIDS+=("$ECHO_PID")
wait_port "$BP" "echo server" "$TMP/echo.log"

if [[ $LOGS == 1 ]]; then LEVEL=info ACCESS=true; else LEVEL=warn ACCESS=false; fi
cat >"$TMP/tlsedge.yaml" <<EOF
log:
  level: $LEVEL
  format: json
  access: $ACCESS
listeners:
  - name: bench
    address: "127.0.0.1:$EP"
    # One client address opens every connection here: the per-address
    # limits (defaults 1000 open, 100 new a second) and max_handshakes
    # would refuse a benchmark; HAProxy below has none either.
    max_connections: 0
    max_connections_per_ip: 0
    connection_rate_per_ip: 0
    max_handshakes: 0
    routes:
      - sni: ["$SNI"]
        mode: passthrough
        backend: echo
backends:
  - name: echo
    servers:
      - address: "127.0.0.1:$BP"
    health:
      type: none       # as HAProxy below: no checks
EOF

if [[ $LOGS == 1 ]]; then HLOG="log stdout format raw local0 info"; else HLOG=""; fi
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4000
    $HLOG

defaults
    mode tcp
    log global
    option tcplog
    timeout connect 5s
    timeout client 1m
    timeout server 1m

# The standard SNI passthrough.
frontend sni
    bind 127.0.0.1:$HP
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend echo if { req_ssl_sni -i $SNI }

backend echo
    server echo1 127.0.0.1:$BP

# The same with splice(2) both ways (off by default in HAProxy).
frontend sni_splice
    bind 127.0.0.1:$HSP
    option splice-request
    option splice-response
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend echo_splice if { req_ssl_sni -i $SNI }

backend echo_splice
    option splice-request
    option splice-response
    server echo1 127.0.0.1:$BP
EOF

declare -A ADDR=([direct]="127.0.0.1:$BP" [tlsedge]="127.0.0.1:$EP" [haproxy]="127.0.0.1:$HP" [haproxy-splice]="127.0.0.1:$HSP")
declare -A BAL=([direct]="")

if [[ " $SETUPS " == *" tlsedge "* ]]; then
	"$TMP/bin/tlsedge" validate -c "$TMP/tlsedge.yaml" >/dev/null
	$(cpu balancer) "$TMP/bin/tlsedge" run -c "$TMP/tlsedge.yaml" 2>"$TMP/tlsedge.log" &
	BAL[tlsedge]=$!
	PIDS+=("$!")
	wait_port "$EP" tlsedge "$TMP/tlsedge.log"
fi
if [[ " $SETUPS " == *" haproxy"* ]]; then
	haproxy -c -q -f "$TMP/haproxy.cfg"
	# -db: in the foreground, no daemon, not the system service.
	$(cpu balancer) haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
	BAL[haproxy]=$!
	BAL[haproxy-splice]=$!
	PIDS+=("$!")
	wait_port "$HP" haproxy "$TMP/haproxy.log"
fi

say "$NCPU CPUs, PIN=$PIN, LOGS=$LOGS, D=$D, ROUNDS=$ROUNDS, load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$TMP/res"
COMMON=(-sni "$SNI" -ca "$TMP/pki/ca.pem" -cert "$TMP/pki/client.pem" -key "$TMP/pki/client-key.pem" -d "$D" -json)
read -r -a SETUP_LIST <<<"$SETUPS"
NSETUPS=${#SETUP_LIST[@]}

for round in $(seq 1 "$ROUNDS"); do
	for mode in $MODES; do
		case $mode in
		throughput) FLAGS=(-c "$TP_C" -size "$SIZE") ;;
		handshake) FLAGS=(-c "$HS_C") ;;
		echo) FLAGS=(-c "$ECHO_C" -size "$ECHO_SIZE") ;;
		*) say "unknown mode $mode"; exit 2 ;;
		esac
		for i in $(seq 0 $((NSETUPS - 1))); do
			s=${SETUP_LIST[$(((i + round - 1) % NSETUPS))]}
			out=$TMP/res/$s.$mode.$round
			quiet
			bal=${BAL[$s]:-}
			read -r b0 t0 < <(sysbusy)
			e0=$(ticks "$ECHO_PID")
			l0=$(ticks "$bal")
			# timeout: the tool stops itself after -d (at most 5m); this is a backstop.
			$(cpu rest) timeout -k 5 330 "$LOAD" -mode "$mode" -addr "${ADDR[$s]}" -label "$s" \
				"${COMMON[@]}" "${FLAGS[@]}" >"$out.load.json" || say "$s $mode: tlsedge-load exited $?"
			read -r b1 t1 < <(sysbusy)
			e1=$(ticks "$ECHO_PID")
			l1=$(ticks "$bal")
			[[ -s $out.load.json ]] || continue
			jq -c --argjson hz "$HZ" --argjson ncpu "$NCPU" \
				--argjson busy $((b1 - b0)) --argjson total $((t1 - t0)) \
				--argjson echo $((e1 - e0)) --argjson bal $((l1 - l0)) '
				. + {backend_cpu_s: ($echo / $hz), balancer_cpu_s: ($bal / $hz)}
				| . + {other_cpu_pct: ([0, ($busy / $hz - .cpu_s - .backend_cpu_s - .balancer_cpu_s)] | max
				        / ($total / $hz) * 100)}
				| . + {balancer_cpu_s_per_gb: (if .bytes > 0 then .balancer_cpu_s / (.bytes / 1e9) else null end),
				       balancer_cpu_us_per_op: (if .ops > 0 then .balancer_cpu_s * 1e6 / .ops else null end)}
				' "$out.load.json" >"$out.json"
		done
	done
done
say "load average $(cut -d' ' -f1-3 /proc/loadavg)"

pairs tlsedge/direct haproxy/direct haproxy-splice/direct tlsedge/haproxy tlsedge/haproxy-splice

echo
header "median of $ROUNDS round(s)"
for mode in $MODES; do
	case $mode in
	throughput)
		row "throughput MB/s" throughput mb_per_sec 1
		row "  balancer CPU s/GB" throughput balancer_cpu_s_per_gb 2
		row "  other CPU %" throughput other_cpu_pct 0 noratio
		;;
	handshake)
		row "handshakes/s" handshake ops_per_sec 0
		row "  handshake p50 ms" handshake p50_ms 3
		row "  handshake p99 ms" handshake p99_ms 3
		row "  balancer CPU us/handshake" handshake balancer_cpu_us_per_op 1
		row "  other CPU %" handshake other_cpu_pct 0 noratio
		;;
	echo)
		row "echo round trips/s" echo ops_per_sec 0
		row "  echo p50 ms" echo p50_ms 3
		row "  echo p99 ms" echo p99_ms 3
		row "  balancer CPU us/round trip" echo balancer_cpu_us_per_op 2
		row "  other CPU %" echo other_cpu_pct 0 noratio
		;;
	esac
done
for mode in $MODES; do row "errors ($mode)" "$mode" errors 0 noratio; done
echo
echo "MB/s: payload echoed back per second (10^6 bytes); a balancer carries it twice (up and down); s/GB per GB echoed."
echo "Ratios are column A / column B: above 1 is better for MB/s and per-second rows, worse for ms and CPU rows."
echo "other CPU %: share of all $NCPU CPUs used during the run by processes outside it (noise when high)."
f=$(ls "$TMP"/res/*.json 2>/dev/null | head -1)
[[ -z $f ]] || echo "TLS: $(jq -r .tls "$f")"
