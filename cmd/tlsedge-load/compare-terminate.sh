#!/usr/bin/env bash
# compare-terminate.sh: HTTPS with client certificates (mutual TLS), served
# three ways in one run on this machine, then one table:
#
#   direct   the load -> a Go net/http HTTPS server that requires and
#            verifies client certificates (tls.RequireAndVerifyClientCert):
#            the baseline, nothing in between;
#   tlsedge  the load -> tlsedge, route mode terminate, protocol http,
#            client_auth require, identity xfcc -> a plain HTTP server;
#   haproxy  the load -> HAProxy mode http, bind ... ssl crt ... ca-file ...
#            verify required, X-Forwarded-Client-Cert set from the verified
#            certificate (hash, base64 DER, RFC 2253 subject) -> the same
#            plain HTTP server.
#
#   bash cmd/tlsedge-load/compare-terminate.sh
#   D=5s ROUNDS=3 MODES="http handshake-http h2" bash cmd/tlsedge-load/compare-terminate.sh
#
# Modes (MODES, default "http handshake-http"):
#   http            HTTP_C keep-alive HTTP/1.1 connections, GET after GET:
#                   requests/s, latency, CPU per request
#   handshake-http  HS_C workers, each request on a new connection (full
#                   handshake, no resumption, client certificate), one GET,
#                   close: connections/s, CPU per connection
#   h2              H2_C HTTP/2 connections with H2_STREAMS requests in flight
#                   on each (not run by default)
#
# Knobs (environment, defaults in brackets):
#   D [10s]          duration of each run; 2 modes x 3 setups x ROUNDS runs
#                    (defaults: 6 runs, about 1.5 minutes in all)
#   ROUNDS [1]       repeat everything; the table shows the median of the rounds
#   HTTP_C [16]  HS_C [8]  H2_C [4]  H2_STREAMS [4]
#   SETUPS ["direct tlsedge haproxy"]
#   LOGS [1]         1: both balancers log every request to a file (tlsedge's
#                    access log, JSON; HAProxy "option httplog" to stdout);
#                    0: both silent
#   CURVE [X25519]   the one key exchange the client offers, in every setup.
#                    Go offers X25519MLKEM768 first by default; HAProxy's
#                    OpenSSL 3.0 has no ML-KEM, so the same offer would compare
#                    a hybrid post-quantum handshake with a classical one.
#   HAPROXY_TICKETS [0]
#                    0: HAProxy sends no TLS 1.3 session tickets (OpenSSL
#                    NumTickets = 0 through OPENSSL_CONF), like the Go servers,
#                    which send none to a client that cannot resume (the load
#                    keeps no session cache, so it sends no
#                    psk_key_exchange_modes). 1: OpenSSL's default, two
#                    tickets after every full handshake, which costs HAProxy
#                    about as much CPU again as the rest of the handshake.
#   HAPROXY_REUSE [always]
#                    HAProxy's http-reuse. always: any idle server connection
#                    serves any request, as tlsedge's keep-alive pool does;
#                    safe (HAProxy's default): a client connection's first
#                    request never reuses one, so every new client connection
#                    costs a new server connection too.
#   PIN, SRC, QUIET_PCT, QUIET_MAX, KEEP: as in compare.sh.
#
# The same certificates everywhere: ECDSA P-256 (tlsedge-load -pki), TLS 1.3,
# TLS_AES_128_GCM_SHA256 (Go's choice on AES hardware; HAProxy is told to
# prefer it, as OpenSSL would pick AES-256 otherwise). The table's footer
# shows, per setup, the version, suite and key exchange the client
# negotiated, the HTTP version and who the HTTP server saw as the client (its
# X-Load-Identity answer): "tls CN=..." direct, "xfcc ...B Subject=..." behind
# a balancer. Besides the client's figures the table shows CPU per request or
# connection of the balancer and of the HTTP server behind it (direct: the
# HTTPS server does everything), both from /proc/PID/stat, their sum, the
# client's own, and "other CPU": processes that are not part of the run. When
# that is high the rates are noise; CPU per request much less so. Everything
# listens on 127.0.0.1 and is killed when the script exits.
set -euo pipefail

D=${D:-10s}
ROUNDS=${ROUNDS:-1}
HTTP_C=${HTTP_C:-16}
HS_C=${HS_C:-8}
H2_C=${H2_C:-4}
H2_STREAMS=${H2_STREAMS:-4}
SETUPS=${SETUPS:-direct tlsedge haproxy}
MODES=${MODES:-http handshake-http}
LOGS=${LOGS:-1}
CURVE=${CURVE:-X25519}
HAPROXY_TICKETS=${HAPROXY_TICKETS:-0}
HAPROXY_REUSE=${HAPROXY_REUSE:-always}
PIN=${PIN:-0}
SRC=${SRC:-tree}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_MAX=${QUIET_MAX:-3}
KEEP=${KEEP:-0}
SNI=api.tlsedge.test

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-compare-terminate.XXXXXX)
# shellcheck source=lib.sh
source "$ROOT/cmd/tlsedge-load/lib.sh"

for s in $SETUPS; do
	case $s in direct | tlsedge | haproxy) ;; *) say "unknown setup $s (direct, tlsedge, haproxy)"; exit 2 ;; esac
done
for mode in $MODES; do
	case $mode in http | handshake-http | h2) ;; *) say "unknown mode $mode (http, handshake-http, h2)"; exit 2 ;; esac
done

need haproxy haproxy
need jq jq
need ss iproute2

build
LOAD=$TMP/bin/tlsedge-load
PKI=$TMP/pki
"$LOAD" -pki "$PKI" -sni "$SNI" 2>/dev/null
cat "$PKI/server.pem" "$PKI/server-key.pem" >"$PKI/haproxy.pem"

PP=$(free_port) # plain HTTP server, behind tlsedge and HAProxy
DP=$(free_port) # direct: HTTPS server, client certificates required
EP=$(free_port) # tlsedge
HP=$(free_port) # haproxy

# The servers; -d is a backstop should this script be killed hard.
$(cpu rest) "$LOAD" -serve-http "127.0.0.1:$PP" -d 30m 2>"$TMP/plain.log" &
PLAIN_PID=$!
PIDS+=("$PLAIN_PID")
$(cpu rest) "$LOAD" -serve-http "127.0.0.1:$DP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem" \
	-client-ca "$PKI/ca.pem" -d 30m 2>"$TMP/direct.log" &
DIRECT_PID=$!
PIDS+=("$DIRECT_PID")
wait_port "$PP" "plain HTTP server" "$TMP/plain.log"
wait_port "$DP" "HTTPS server" "$TMP/direct.log"

if [[ $LOGS == 1 ]]; then LEVEL=info ACCESS=true; else LEVEL=warn ACCESS=false; fi
mkdir -p "$TMP/cfg"
cat >"$TMP/cfg/tlsedge.yaml" <<EOF
log:
  level: $LEVEL
  format: json
  access: $ACCESS
certs:
  storage: $TMP/certmagic
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
        mode: terminate
        protocol: http
        backend: plain
        identity: xfcc
        tls:
          cert: $PKI/server.pem
          key: $PKI/server-key.pem
          client_auth: require
          client_ca: $PKI/ca.pem
backends:
  - name: plain
    servers:
      - address: "127.0.0.1:$PP"
    health:
      type: none       # as HAProxy below: no checks
EOF

if [[ $LOGS == 1 ]]; then HLOG="log stdout format raw local0 info"; else HLOG=""; fi
# X-Forwarded-Client-Cert as close to tlsedge's (Envoy's) as HAProxy 2.6's
# sample fetches go: Hash (SHA-256 of the DER, hex), Cert (the DER in base64,
# URL-encoded; Envoy and tlsedge send URL-encoded PEM, the same base64 with
# PEM lines around it) and Subject (RFC 2253, as tlsedge prints it). A client's
# own header is removed first; option forwardfor and X-Forwarded-Proto/-Host
# as tlsedge sets them.
cat >"$TMP/haproxy.cfg" <<EOF
global
    nbthread 2
    maxconn 4000
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    $HLOG

defaults
    mode http
    log global
    option httplog
    timeout connect 5s
    timeout client 1m
    timeout server 1m
    timeout http-request 10s
    timeout http-keep-alive 2m

frontend terminate
    bind 127.0.0.1:$HP ssl crt $PKI/haproxy.pem ca-file $PKI/ca.pem verify required alpn h2,http/1.1 curves X25519:P-256 ssl-min-ver TLSv1.2
    http-request del-header X-Forwarded-Client-Cert
    http-request set-header X-Forwarded-Client-Cert "Hash=%[ssl_c_der,sha2(256),hex,lower];Cert=\\"%[ssl_c_der,base64,url_enc]\\";Subject=\\"%[ssl_c_s_dn(,0,rfc2253)]\\"" if { ssl_c_used } { ssl_c_verify 0 }
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend plain

backend plain
    http-reuse $HAPROXY_REUSE
    server app1 127.0.0.1:$PP
EOF
# OpenSSL reads NumTickets from its config's system_default section.
cat >"$TMP/openssl.cnf" <<EOF
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1.2
NumTickets = 0
EOF
HENV=(env)
[[ $HAPROXY_TICKETS == 1 ]] || HENV=(env "OPENSSL_CONF=$TMP/openssl.cnf")

declare -A ADDR=([direct]="127.0.0.1:$DP" [tlsedge]="127.0.0.1:$EP" [haproxy]="127.0.0.1:$HP")
declare -A BAL=([direct]="")
declare -A SRV=([direct]=$DIRECT_PID [tlsedge]=$PLAIN_PID [haproxy]=$PLAIN_PID)

if [[ " $SETUPS " == *" tlsedge "* ]]; then
	"$TMP/bin/tlsedge" validate -c "$TMP/cfg/tlsedge.yaml" >/dev/null
	$(cpu balancer) "$TMP/bin/tlsedge" run -c "$TMP/cfg/tlsedge.yaml" 2>"$TMP/tlsedge.log" &
	BAL[tlsedge]=$!
	PIDS+=("$!")
	wait_port "$EP" tlsedge "$TMP/tlsedge.log"
fi
if [[ " $SETUPS " == *" haproxy "* ]]; then
	"${HENV[@]}" haproxy -c -q -f "$TMP/haproxy.cfg"
	# -db: in the foreground, no daemon, not the system service. env and
	# taskset exec it, so $! is HAProxy itself.
	# shellcheck disable=SC2046 # $(cpu) is a prefix of words, or none
	"${HENV[@]}" $(cpu balancer) haproxy -db -f "$TMP/haproxy.cfg" >"$TMP/haproxy.log" 2>&1 &
	BAL[haproxy]=$!
	PIDS+=("$!")
	wait_port "$HP" haproxy "$TMP/haproxy.log"
fi

say "$NCPU CPUs, PIN=$PIN, LOGS=$LOGS, D=$D, ROUNDS=$ROUNDS, CURVE=$CURVE, HAPROXY_TICKETS=$HAPROXY_TICKETS, HAPROXY_REUSE=$HAPROXY_REUSE, load average $(cut -d' ' -f1-3 /proc/loadavg)"
mkdir -p "$TMP/res"
COMMON=(-sni "$SNI" -ca "$PKI/ca.pem" -cert "$PKI/client.pem" -key "$PKI/client-key.pem"
	-tls 1.3 -curve "$CURVE" -d "$D" -json)
read -r -a SETUP_LIST <<<"$SETUPS"
NSETUPS=${#SETUP_LIST[@]}

for round in $(seq 1 "$ROUNDS"); do
	for mode in $MODES; do
		case $mode in
		http) FLAGS=(-mode http -c "$HTTP_C") ;;
		handshake-http) FLAGS=(-mode handshake-http -c "$HS_C") ;;
		h2) FLAGS=(-mode http -h2 -c "$H2_C" -streams "$H2_STREAMS") ;;
		esac
		for i in $(seq 0 $((NSETUPS - 1))); do
			s=${SETUP_LIST[$(((i + round - 1) % NSETUPS))]}
			out=$TMP/res/$s.$mode.$round
			quiet
			bal=${BAL[$s]:-}
			srv=${SRV[$s]}
			read -r b0 t0 < <(sysbusy)
			s0=$(ticks "$srv")
			l0=$(ticks "$bal")
			# timeout: the tool stops itself after -d (at most 5m); this is a backstop.
			$(cpu rest) timeout -k 5 330 "$LOAD" -addr "${ADDR[$s]}" -label "$s" \
				"${COMMON[@]}" "${FLAGS[@]}" >"$out.load.json" || say "$s $mode: tlsedge-load exited $?"
			read -r b1 t1 < <(sysbusy)
			s1=$(ticks "$srv")
			l1=$(ticks "$bal")
			[[ -s $out.load.json ]] || continue
			jq -c --argjson hz "$HZ" --argjson busy $((b1 - b0)) --argjson total $((t1 - t0)) \
				--argjson srv $((s1 - s0)) --argjson bal "$(if [[ -n $bal ]]; then echo $((l1 - l0)); else echo null; fi)" '
				. + {server_cpu_s: ($srv / $hz), balancer_cpu_s: (if $bal == null then null else $bal / $hz end)}
				| . + {other_cpu_pct: ([0, ($busy / $hz - .cpu_s - .server_cpu_s - (.balancer_cpu_s // 0))] | max
				        / ($total / $hz) * 100)}
				| (if .ops > 0 then 1e6 / .ops else null end) as $per
				| . + {balancer_cpu_us_per_op: (if $per and .balancer_cpu_s != null then .balancer_cpu_s * $per else null end),
				       server_cpu_us_per_op: (if $per then .server_cpu_s * $per else null end),
				       serving_cpu_us_per_op: (if $per then (.server_cpu_s + (.balancer_cpu_s // 0)) * $per else null end),
				       client_cpu_us_per_op: (if $per then .cpu_s * $per else null end),
				       wire_in_per_conn: (if .conns > 0 then .wire_in / .conns else null end)}
				' "$out.load.json" >"$out.json"
		done
	done
done
say "load average $(cut -d' ' -f1-3 /proc/loadavg)"

pairs tlsedge/direct haproxy/direct tlsedge/haproxy

echo
header "median of $ROUNDS round(s)"
for mode in $MODES; do
	case $mode in
	http | h2)
		if [[ $mode == http ]]; then what="HTTP/1.1 keep-alive, c=$HTTP_C"; else what="HTTP/2, c=$H2_C x $H2_STREAMS streams"; fi
		echo "$what"
		row "  requests/s" "$mode" ops_per_sec 0
		row "  p50 ms" "$mode" p50_ms 3
		row "  p99 ms" "$mode" p99_ms 3
		row "  balancer CPU us/request" "$mode" balancer_cpu_us_per_op 1
		row "  server CPU us/request" "$mode" server_cpu_us_per_op 1
		row "  balancer+server us/request" "$mode" serving_cpu_us_per_op 1
		row "  client CPU us/request" "$mode" client_cpu_us_per_op 1
		row "  connections opened" "$mode" conns 0 noratio
		row "  other CPU %" "$mode" other_cpu_pct 0 noratio
		row "  errors" "$mode" errors 0 noratio
		;;
	handshake-http)
		echo "new connection per request (full mTLS handshake + 1 GET), c=$HS_C"
		row "  connections/s" "$mode" ops_per_sec 0
		row "  p50 ms" "$mode" p50_ms 3
		row "  p99 ms" "$mode" p99_ms 3
		row "  balancer CPU us/connection" "$mode" balancer_cpu_us_per_op 1
		row "  server CPU us/connection" "$mode" server_cpu_us_per_op 1
		row "  balancer+server us/conn" "$mode" serving_cpu_us_per_op 1
		row "  client CPU us/connection" "$mode" client_cpu_us_per_op 1
		row "  bytes read per connection" "$mode" wire_in_per_conn 0
		row "  other CPU %" "$mode" other_cpu_pct 0 noratio
		row "  errors" "$mode" errors 0 noratio
		;;
	esac
done
echo
echo "Ratios are column A / column B: above 1 is better for per-second rows, worse for ms and CPU rows."
echo "server CPU: the HTTP server behind the balancer (direct: the HTTPS server, which does the TLS too)."
echo "other CPU %: share of all $NCPU CPUs used during the run by processes outside it (noise when high)."
for s in $SETUPS; do
	for mode in $MODES; do
		f=$TMP/res/$s.$mode.1.json
		[[ -s $f ]] || continue
		printf "%-8s %-15s %s, %s; the server saw: %s\n" "$s" "$mode" "$(jq -r .tls "$f")" "$(jq -r .proto "$f")" "$(jq -r .identity "$f")"
	done
done
