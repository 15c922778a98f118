#!/usr/bin/env bash
# compare.sh: tlsedge, HAProxy and nginx side by side, and the servers
# directly, in one run on this machine, for the three proxy modes
# (passthrough; terminate with client certificates and the client's identity
# forwarded as a header; reencrypt) and five workloads; then one markdown
# table and a JSON file of every figure. BENCHMARKS.md at the top of the
# repository says what is measured and how; this is what runs.
#
#   bash cmd/tlsedge-load/compare.sh             # or: make compare
#   D=2s ROUNDS=1 IDLE=1000 bash cmd/tlsedge-load/compare.sh   # make compare-quick
#   PROXIES=terminate SETUPS="tlsedge haproxy" MODES="keepalive idle" bash cmd/tlsedge-load/compare.sh
#   PROFILE=/tmp/prof PROXIES=terminate MODES="keepalive idle" bash cmd/tlsedge-load/compare.sh
#
# Workloads (MODES, default "keepalive newconn bulk idle idlews"):
#   keepalive  KA_C connections kept open, one request after another on each:
#              passthrough a ECHO_SIZE-byte echo round trip, terminate and
#              reencrypt an HTTP/1.1 GET (100-byte answer)
#   newconn    NC_C workers, a new connection per operation: full mutual TLS
#              1.3 handshake (no resumption), then 1 byte echoed
#              (passthrough) or one GET (Connection: close)
#   bulk       BULK_C connections, each moving SIZE bytes: echoed back
#              (passthrough) or one GET answered with SIZE bytes
#   idle       IDLE connections opened (64 at a time), one round trip each,
#              then held; once all are up the proxy's RSS is read from
#              /proc ("just opened"), and again with its open file
#              descriptors after IDLE_SETTLE seconds more ("held": what a
#              fleet that idles for hours costs), both compared with those of
#              the same process just before (each proxy is restarted before
#              its idle run, so the figures are of a fresh process); then
#              one more round trip on each tells how many the proxy held
#   idlews     terminate and reencrypt only: as idle, but each connection is
#              an HTTP/1.1 WebSocket upgrade (GET with Upgrade: websocket)
#              through the proxy to the HTTP server, one message echoed each
#              way, then held; the final round trip is another message
#
# Setups (SETUPS, default "direct tlsedge haproxy nginx"):
#   direct   no proxy: passthrough loads the TLS echo server, terminate the Go
#            HTTPS server that requires client certificates itself; not run
#            for reencrypt (it would be terminate's) nor for idle and idlews
#   tlsedge  this checkout (SRC), GOMAXPROCS=THREADS
#   haproxy  the Debian package, nbthread THREADS; passthrough with
#            req_ssl_sni routing (option splice-auto with HAPROXY_SPLICE=1),
#            terminate and reencrypt in mode http
#   nginx    the Debian package with libnginx-mod-stream, worker_processes
#            THREADS; passthrough with ssl_preread and a map on the SNI,
#            terminate and reencrypt with proxy_pass and upstream keepalive
#
# Knobs (environment, defaults in brackets):
#   D [5s]           duration of each keepalive, newconn and bulk run
#   ROUNDS [3]       repeat everything; the table shows the median of the
#                    rounds. Within a round the setups take turns per
#                    workload, starting one later each round
#   PROXIES ["passthrough terminate reencrypt"]   MODES, SETUPS: see above
#   KA_C [16]  NC_C [8]  BULK_C [4]  SIZE [64MiB]  ECHO_SIZE [64]
#   IDLE [9000]      idle connections; capped so that every contestant fits
#                    in the file descriptor budget (below)
#   IDLE_SETTLE [30] seconds the idle connections are held before the
#                    "held" RSS and fds are read (0 to 240)
#   FDS [20000]      the budget: this script raises `ulimit -n` to this, or
#                    to the hard limit when lower, and every process it starts
#                    inherits it (HAProxy: ulimit-n and maxconn from it;
#                    nginx: worker_rlimit_nofile and worker_connections)
#   THREADS [1]      threads (HAProxy), worker processes (nginx), GOMAXPROCS
#                    (tlsedge) of each proxy
#   CURVE [X25519]   the one key exchange the client offers everywhere
#                    (HAProxy's and nginx's OpenSSL 3.0 have no ML-KEM)
#   HAPROXY_SPLICE [1]  1: option splice-auto in passthrough; 0: off
#   HAPROXY_REUSE [always]   HAProxy's http-reuse (always: any idle server
#                    connection serves any request, as tlsedge and nginx's
#                    upstream keepalive do)
#   LOGS [1]         1: every proxy logs one line per connection or request
#                    to a file; 0: none does
#   PIN [0]          1: taskset pins the proxy to CPU 1, load and servers to
#                    CPU 0
#   SRC [tree]       tree: build the checkout as it is; head: `git archive
#                    HEAD` plus this folder
#   QUIET_PCT [15] QUIET_MAX [3]
#                    before each run, wait up to QUIET_MAX seconds for the CPU
#                    use of everything else to fall under QUIET_PCT percent
#   OUT [/tmp/tlsedge-compare.json]   the JSON of every run and the table
#   TABLE [/tmp/tlsedge-compare.md]   the markdown table (also printed)
#   KEEP [0]         1: keep the temp folder (configs, logs, results)
#   PROFILE [off]    a folder: tlsedge gets an admin listener on 127.0.0.1
#                    (it serves /debug/pprof/), and the script saves there
#                    a CPU profile of each tlsedge keepalive and newconn run,
#                    PROFILE/<proxy mode>-<workload>-r<round>.pprof (the
#                    run's length minus a second, at least 1 s, at most 59),
#                    and a heap profile (after a GC) of each tlsedge idle and
#                    idlews run while its connections are held (after the RSS
#                    and fds are read),
#                    PROFILE/<proxy mode>-<workload>-r<round>.heap.pprof.
#                    Read one with: go tool pprof -top FILE. The profiler
#                    adds a little to tlsedge's CPU figures of those runs.
#                    Off: no admin listener
#
# Per run the script reads, from /proc/PID/stat, the CPU ticks of the proxy
# (nginx: master and workers), of the servers behind it, and of the whole
# machine: "other CPU" is the share of both cores used by processes that are
# not part of the run (the figures of a run with a high one are noise). The
# client reports its own CPU. Everything listens on 127.0.0.1, on free ports
# in 10000-32000; everything this script starts is killed when it exits.
set -euo pipefail

D=${D:-5s}
ROUNDS=${ROUNDS:-3}
PROXIES=${PROXIES:-passthrough terminate reencrypt}
MODES=${MODES:-keepalive newconn bulk idle idlews}
SETUPS=${SETUPS:-direct tlsedge haproxy nginx}
KA_C=${KA_C:-16}
NC_C=${NC_C:-8}
BULK_C=${BULK_C:-4}
SIZE=${SIZE:-64MiB}
ECHO_SIZE=${ECHO_SIZE:-64}
IDLE=${IDLE:-9000}
IDLE_SETTLE=${IDLE_SETTLE:-30}
FDS=${FDS:-20000}
THREADS=${THREADS:-1}
CURVE=${CURVE:-X25519}
HAPROXY_SPLICE=${HAPROXY_SPLICE:-1}
HAPROXY_REUSE=${HAPROXY_REUSE:-always}
LOGS=${LOGS:-1}
PIN=${PIN:-0}
SRC=${SRC:-tree}
QUIET_PCT=${QUIET_PCT:-15}
QUIET_MAX=${QUIET_MAX:-3}
OUT=${OUT:-/tmp/tlsedge-compare.json}
TABLE=${TABLE:-/tmp/tlsedge-compare.md}
KEEP=${KEEP:-0}
PROFILE=${PROFILE:-}
SNI=bench.tlsedge.test

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TMP=$(mktemp -d /tmp/tlsedge-compare.XXXXXX)
# shellcheck source=lib.sh
source "$ROOT/cmd/tlsedge-load/lib.sh"

if ! [[ $IDLE_SETTLE =~ ^[0-9]+$ ]] || ((IDLE_SETTLE > 240)); then
	say "IDLE_SETTLE=$IDLE_SETTLE: seconds, 0 to 240 (the load holds its connections for 5 minutes at most)"
	exit 2
fi
for p in $PROXIES; do
	case $p in passthrough | terminate | reencrypt) ;; *) say "unknown proxy mode $p (passthrough, terminate, reencrypt)"; exit 2 ;; esac
done
for m in $MODES; do
	case $m in keepalive | newconn | bulk | idle | idlews) ;; *) say "unknown workload $m (keepalive, newconn, bulk, idle, idlews)"; exit 2 ;; esac
done
for s in $SETUPS; do
	case $s in direct | tlsedge | haproxy | nginx) ;; *) say "unknown setup $s (direct, tlsedge, haproxy, nginx)"; exit 2 ;; esac
done
has() { [[ " $SETUPS " == *" $1 "* ]]; }

need jq jq
need ss iproute2
has haproxy && need haproxy haproxy
if has nginx; then
	need nginx nginx
	[[ -e /usr/lib/nginx/modules/ngx_stream_module.so ]] || need /nonexistent libnginx-mod-stream
fi
if [[ -n $PROFILE ]]; then
	need curl curl
	mkdir -p "$PROFILE"
	PROFILE=$(cd "$PROFILE" && pwd)
	# The CPU profile's seconds: the run's length minus one, at least 1, and
	# under the admin server's 60 s write timeout.
	PSECS=$(seconds "$D") || { say "PROFILE: D=$D is not a duration like 5s"; exit 2; }
	PSECS=$((PSECS - 1 < 1 ? 1 : PSECS - 1 > 59 ? 59 : PSECS - 1))
fi

# The file descriptor budget, the same for every process started below.
HARD=$(ulimit -Hn)
[[ $HARD == unlimited ]] && HARD=$FDS
FDLIM=$((FDS < HARD ? FDS : HARD))
ulimit -n "$FDLIM"
# A proxy holds two descriptors per connection (client and server), plus
# its listeners, logs and pools (HAProxy: maxpipes below).
IDLE_MAX=$(((FDLIM - 600) / 2))
if ((IDLE > IDLE_MAX)); then
	say "IDLE=$IDLE does not fit in $FDLIM file descriptors at 2 a connection: $IDLE_MAX"
	IDLE=$IDLE_MAX
fi

build
LOAD=$TMP/bin/tlsedge-load
PKI=$TMP/pki
"$LOAD" -pki "$PKI" -sni "$SNI" 2>/dev/null
cat "$PKI/server.pem" "$PKI/server-key.pem" >"$PKI/haproxy.pem"

BP=$(free_port)   # TLS echo server (passthrough's backend)
PP=$(free_port)   # plain HTTP server (terminate's backend)
TP=$(free_port)   # HTTPS server, no client certificates (reencrypt's backend)
DP=$(free_port)   # HTTPS server, client certificates required (terminate's direct)
declare -A PORT
for s in tlsedge haproxy nginx; do
	for p in passthrough terminate reencrypt; do PORT[$s.$p]=$(free_port); done
done
PORT[direct.passthrough]=$BP
PORT[direct.terminate]=$DP
if [[ -n $PROFILE ]]; then AP=$(free_port); fi # tlsedge's admin listener (/debug/pprof/)

# The servers; -d is a backstop should this script be killed hard.
SERVERS=()
start_server echo -serve "127.0.0.1:$BP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem" -client-ca "$PKI/ca.pem"
start_server plain -serve-http "127.0.0.1:$PP"
start_server tlsback -serve-http "127.0.0.1:$TP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem"
start_server direct -serve-http "127.0.0.1:$DP" -cert "$PKI/server.pem" -key "$PKI/server-key.pem" -client-ca "$PKI/ca.pem"
wait_port "$BP" "echo server" "$TMP/echo.log"
wait_port "$PP" "plain HTTP server" "$TMP/plain.log"
wait_port "$TP" "HTTPS server" "$TMP/tlsback.log"
wait_port "$DP" "HTTPS server (client certificates)" "$TMP/direct.log"
server_ticks() {
	local p sum=0
	for p in "${SERVERS[@]}"; do sum=$((sum + $(ticks "$p"))); done
	echo "$sum"
}

# --- The configurations: per proxy, one generator for passthrough and one
# for the modes that end TLS (terminate and reencrypt), each called once per
# mode; what differs between the modes is in the arguments of the calls.

# tlsedge: a listener and a backend per mode, no limit the peers do not have.
# Its config has a folder of its own: tlsedge watches the config's folder
# for changes, and would otherwise wake up for each line of its own log
# (and the others') written next to it.
mkdir -p "$TMP/tlsedge"
if [[ $LOGS == 1 ]]; then LEVEL=info ACCESS=true; else LEVEL=warn ACCESS=false; fi
{
	if [[ -n $PROFILE ]]; then
		cat <<EOF
admin:
  address: "127.0.0.1:$AP"
EOF
	fi
	cat <<EOF
log:
  level: $LEVEL
  format: json
  access: $ACCESS
certs:
  storage: $TMP/certmagic
listeners:
EOF
	#             name  port                            mode        backend
	edge_listener pt    "${PORT[tlsedge.passthrough]}"  passthrough echo
	edge_listener term  "${PORT[tlsedge.terminate]}"    terminate   plain
	edge_listener reenc "${PORT[tlsedge.reencrypt]}"    reencrypt   tlsback
	echo "backends:"
	#            name    port  reencrypt: TLS to the server, verified
	edge_backend echo    "$BP"
	edge_backend plain   "$PP"
	edge_backend tlsback "$TP" "ca: $PKI/ca.pem" "server_name: $SNI"
} >"$TMP/tlsedge/tlsedge.yaml"

# HAProxy: the same three, its maxconn from the budget.
if [[ $LOGS == 1 ]]; then HLOG="log stdout format raw local0 info"; else HLOG=""; fi
if [[ $HAPROXY_SPLICE == 1 ]]; then HSPLICE="option splice-auto"; else HSPLICE=""; fi
haproxy_passthrough() { # haproxy_passthrough FRONTEND PORT BACKEND SERVER: req_ssl_sni routing
	cat <<EOF

frontend $1
    mode tcp
    option tcplog
    bind 127.0.0.1:$2
    $HSPLICE
    tcp-request inspect-delay 5s
    tcp-request content accept if { req_ssl_hello_type 1 }
    use_backend $3 if { req_ssl_sni -i $SNI }

backend $3
    mode tcp
    $HSPLICE
    server echo1 $4
EOF
}
# X-Forwarded-Client-Cert as close to tlsedge's (Envoy's) as HAProxy 2.6's
# sample fetches go; a client's own header is removed first. WebSocket
# upgrades pass as they are; timeout tunnel keeps idle ones for an hour.
haproxy_http() { # haproxy_http FRONTEND PORT BACKEND SERVER [SERVER-OPTION...]
	cat <<EOF

frontend $1
    mode http
    option httplog
    timeout http-request 10s
    timeout http-keep-alive 10m
    bind 127.0.0.1:$2 ssl crt $PKI/haproxy.pem ca-file $PKI/ca.pem verify required alpn h2,http/1.1 curves X25519:P-256
    http-request del-header X-Forwarded-Client-Cert
    http-request set-header X-Forwarded-Client-Cert "Hash=%[ssl_c_der,sha2(256),hex,lower];Cert=\\"%[ssl_c_der,base64,url_enc]\\";Subject=\\"%[ssl_c_s_dn(,0,rfc2253)]\\"" if { ssl_c_used } { ssl_c_verify 0 }
    option forwardfor
    http-request set-header X-Forwarded-Proto https
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    default_backend $3

backend $3
    mode http
    http-reuse $HAPROXY_REUSE
    timeout tunnel 1h
    server app1 ${*:4}
EOF
}
{
	cat <<EOF
global
    nbthread $THREADS
    ulimit-n $FDLIM
    # Its sockets (2 a connection) and splice pipes (2 fds each) must fit.
    maxpipes 100
    maxconn $(((FDLIM - 600) / 2))
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    $HLOG

defaults
    log global
    maxconn $(((FDLIM - 600) / 2))
    timeout connect 5s
    timeout client 10m
    timeout server 10m
EOF
	#                   frontend port                            backend server
	haproxy_passthrough pt       "${PORT[haproxy.passthrough]}"  echo    "127.0.0.1:$BP"
	#            frontend port                            backend server           reencrypt: TLS to the server, verified
	haproxy_http term     "${PORT[haproxy.terminate]}"    plain   "127.0.0.1:$PP"
	haproxy_http reenc    "${PORT[haproxy.reencrypt]}"    tlsback "127.0.0.1:$TP" \
		ssl verify required ca-file "$PKI/ca.pem" sni "str($SNI)" verifyhost "$SNI" alpn http/1.1
} >"$TMP/haproxy.cfg"
# OpenSSL (HAProxy, nginx) sends no TLS 1.3 session tickets, as the Go
# servers send none to a client that cannot resume.
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

# nginx: stream for passthrough, http for terminate and reencrypt.
mkdir -p "$TMP/nginx"
if [[ $LOGS == 1 ]]; then
	NSLOG="access_log $TMP/nginx/stream.log basic;" NHLOG="access_log $TMP/nginx/access.log;"
else
	NSLOG="access_log off;" NHLOG="access_log off;"
fi
nginx_passthrough() { # nginx_passthrough PORT SERVER: ssl_preread and a map on the SNI
	cat <<EOF
stream {
    log_format basic '\$remote_addr [\$time_local] \$ssl_preread_server_name \$status \$bytes_sent \$bytes_received \$session_time';
    $NSLOG
    map \$ssl_preread_server_name \$pt_backend {
        $SNI $2;
        default 127.0.0.1:1;
    }
    server {
        listen 127.0.0.1:$1;
        ssl_preread on;
        proxy_pass \$pt_backend;
        proxy_timeout 10m;
    }
}
EOF
}
# A WebSocket upgrade is passed on (Upgrade, and Connection: upgrade from the
# map in http {}); other requests send no Connection header, so the upstream
# connections are kept alive.
nginx_http() { # nginx_http UPSTREAM PORT SERVER SCHEME [DIRECTIVE...]: DIRECTIVEs go into the location
	cat <<EOF
    upstream $1 {
        server $3;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2 ssl;
        ssl_certificate $PKI/server.pem;
        ssl_certificate_key $PKI/server-key.pem;
        ssl_client_certificate $PKI/ca.pem;
        ssl_verify_client on;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ecdh_curve X25519:prime256v1;
        ssl_session_tickets off;
        ssl_conf_command Ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256;
        keepalive_timeout 10m;
        keepalive_requests 100000000;
        location / {
            proxy_pass $4://$1;
            proxy_http_version 1.1;
            proxy_set_header Upgrade \$http_upgrade;
            proxy_set_header Connection \$connection_upgrade;
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto https;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Forwarded-Client-Cert "Hash=\$ssl_client_fingerprint;Cert=\"\$ssl_client_escaped_cert\";Subject=\"\$ssl_client_s_dn\"";
            proxy_max_temp_file_size 0;
            proxy_read_timeout 1h;
EOF
	(($# > 4)) && printf '            %s\n' "${@:5}"
	echo "        }"
	echo "    }"
}
{
	cat <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process on;
user root;
worker_processes $THREADS;
worker_rlimit_nofile $FDLIM;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events {
    worker_connections $FDLIM;
}
EOF
	#                 port                         server
	nginx_passthrough "${PORT[nginx.passthrough]}" "127.0.0.1:$BP"
	cat <<EOF
http {
    $NHLOG
    client_body_temp_path $TMP/nginx/body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    map \$http_upgrade \$connection_upgrade {
        default upgrade;
        '' '';
    }
EOF
	#          upstream port                        server          scheme reencrypt: TLS to the server, verified
	nginx_http plain    "${PORT[nginx.terminate]}"  "127.0.0.1:$PP" http
	nginx_http tlsback  "${PORT[nginx.reencrypt]}"  "127.0.0.1:$TP" https \
		"proxy_ssl_verify on;" "proxy_ssl_trusted_certificate $PKI/ca.pem;" "proxy_ssl_name $SNI;" \
		"proxy_ssl_server_name on;" "proxy_ssl_session_reuse on;"
	echo "}"
} >"$TMP/nginx.conf"

# --- Starting and stopping the proxies (each is restarted before its idle
# runs, so those measure a fresh process). BAL[setup] is the PID.
declare -A BAL=([direct]="")
start_proxy() { # start_proxy SETUP
	# shellcheck disable=SC2046 # $(cpu) is a prefix of words, or none
	case $1 in
	tlsedge)
		env GOMAXPROCS="$THREADS" $(cpu balancer) "$TMP/bin/tlsedge" run -c "$TMP/tlsedge/tlsedge.yaml" 2>>"$TMP/tlsedge.log" &
		BAL[tlsedge]=$!
		;;
	haproxy)
		# -db: in the foreground, not the system service. env and taskset
		# exec it, so $! is HAProxy itself.
		env "OPENSSL_CONF=$TMP/openssl.cnf" $(cpu balancer) haproxy -db -f "$TMP/haproxy.cfg" >>"$TMP/haproxy.log" 2>&1 &
		BAL[haproxy]=$!
		;;
	nginx)
		env "OPENSSL_CONF=$TMP/openssl.cnf" $(cpu balancer) nginx -c "$TMP/nginx.conf" -e "$TMP/nginx/error.log" >>"$TMP/nginx.log" 2>&1 &
		BAL[nginx]=$!
		;;
	esac
	PIDS+=("${BAL[$1]}")
	local p
	for p in $PROXIES; do wait_port "${PORT[$1.$p]}" "$1" "$TMP/$1.log"; done
	if [[ $1 == tlsedge && -n $PROFILE ]]; then wait_port "$AP" "tlsedge's admin listener" "$TMP/tlsedge.log"; fi
}
stop_proxy() { # stop_proxy SETUP
	local pid=${BAL[$1]} p
	kill "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	for p in $PROXIES; do
		for _ in $(seq 1 100); do
			listening "${PORT[$1.$p]}" || break
			sleep 0.1
		done
	done
}
if has tlsedge; then "$TMP/bin/tlsedge" validate -c "$TMP/tlsedge/tlsedge.yaml" >/dev/null; fi
if has haproxy; then env "OPENSSL_CONF=$TMP/openssl.cnf" haproxy -c -q -f "$TMP/haproxy.cfg"; fi
if has nginx; then env "OPENSSL_CONF=$TMP/openssl.cnf" nginx -t -q -c "$TMP/nginx.conf" -e "$TMP/nginx/error.log"; fi
for s in tlsedge haproxy nginx; do if has "$s"; then start_proxy "$s"; fi; done

# --- The machine and the knobs, for the JSON.
RES=$TMP/res
mkdir -p "$RES"
jq -n --arg nproc "$NCPU" --arg cpu "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)" \
	--arg kernel "$(uname -r)" --arg go "$(go version)" \
	--arg haproxy "$( (haproxy -v 2>/dev/null || true) | head -1)" --arg nginx "$( (nginx -v 2>&1 || true) | head -1)" \
	--arg tlsedge "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo no-git) (SRC=$SRC)" \
	--arg date "$(date -u +%FT%TZ)" --arg loadavg "$(cut -d' ' -f1-3 /proc/loadavg)" \
	--arg knobs "D=$D ROUNDS=$ROUNDS PROXIES=\"$PROXIES\" MODES=\"$MODES\" SETUPS=\"$SETUPS\" KA_C=$KA_C NC_C=$NC_C BULK_C=$BULK_C SIZE=$SIZE ECHO_SIZE=$ECHO_SIZE IDLE=$IDLE IDLE_SETTLE=$IDLE_SETTLE FDS=$FDLIM THREADS=$THREADS CURVE=$CURVE HAPROXY_SPLICE=$HAPROXY_SPLICE HAPROXY_REUSE=$HAPROXY_REUSE LOGS=$LOGS PIN=$PIN${PROFILE:+ PROFILE=$PROFILE}" \
	'{nproc: ($nproc | tonumber), cpu: $cpu, kernel: $kernel, go: $go, haproxy: $haproxy, nginx: $nginx,
	  tlsedge: $tlsedge, date: $date, loadavg_at_start: $loadavg, knobs: $knobs}' >"$RES/meta.json"
say "$NCPU CPUs, $FDLIM fds each, IDLE=$IDLE, THREADS=$THREADS, PIN=$PIN, LOGS=$LOGS, D=$D, ROUNDS=$ROUNDS, load average $(cut -d' ' -f1-3 /proc/loadavg)"

COMMON=(-sni "$SNI" -ca "$PKI/ca.pem" -cert "$PKI/client.pem" -key "$PKI/client-key.pem" -tls 1.3 -curve "$CURVE" -json)

# flags PROXY WORKLOAD: the load's flags.
flags() {
	case $1.$2 in
	passthrough.keepalive) echo "-mode echo -c $KA_C -size $ECHO_SIZE -d $D" ;;
	passthrough.newconn) echo "-mode handshake -c $NC_C -d $D" ;;
	passthrough.bulk) echo "-mode throughput -c $BULK_C -size $SIZE -d $D" ;;
	passthrough.idle) echo "-mode idle -c $IDLE -d 5m" ;;
	*.keepalive) echo "-mode http -c $KA_C -d $D" ;;
	*.newconn) echo "-mode handshake-http -c $NC_C -d $D" ;;
	*.bulk) echo "-mode http -c $BULK_C -path /?bytes=$(bytes "$SIZE") -d $D" ;;
	*.idle) echo "-mode idle-http -c $IDLE -d 5m" ;;
	*.idlews) echo "-mode idle-ws -c $IDLE -d 5m" ;;
	esac
}

# pprof NAME WHAT: with PROFILE, save tlsedge's /debug/pprof/WHAT as
# PROFILE/NAME (curl fails on an HTTP error; a warning, not the end).
pprof() {
	curl -fsS -m $((PSECS + 30)) -o "$PROFILE/$1" "http://127.0.0.1:$AP/debug/pprof/$2" 2>>"$TMP/pprof.log" ||
		say "PROFILE: $2 failed: $(tail -1 "$TMP/pprof.log")"
}

# one PROXY WORKLOAD SETUP ROUND: one run, recorded in $RES.
one() {
	local proxy=$1 work=$2 s=$3 round=$4 out bal b0 t0 b1 t1 e0 e1 l0 l1 lpid ppid="" idle=0
	local rss0=null rssr=null rss1=null fd0=null fd1=null
	out=$RES/$proxy.$work.$s.$round
	if [[ $work == idle || $work == idlews ]]; then idle=1; fi
	if ((idle)) && [[ $s != direct ]]; then
		stop_proxy "$s"
		start_proxy "$s"
	fi
	quiet
	bal=${BAL[$s]:-}
	if ((idle)); then
		rss0=$(rss_kb "$bal") fd0=$(fds "$bal")
	fi
	read -r b0 t0 < <(sysbusy)
	e0=$(server_ticks)
	l0=$(treeticks "$bal")
	# timeout is a backstop (the load ends itself after -d); it relays the
	# SIGINT below to the load, and kills it 120 s later if still running.
	# shellcheck disable=SC2046 # flags and $(cpu) are words
	$(cpu rest) timeout -k 120 400 "$LOAD" -addr "127.0.0.1:${PORT[$s.$proxy]}" -label "$s" "${COMMON[@]}" \
		$(flags "$proxy" "$work") >"$out.load.json" 2>"$out.load.log" &
	lpid=$!
	if [[ -n $PROFILE && $s == tlsedge && ($work == keepalive || $work == newconn) ]]; then
		pprof "$proxy-$work-r$round.pprof" "profile?seconds=$PSECS" &
		ppid=$!
		PIDS+=("$ppid")
	fi
	if ((idle)); then
		# Wait for the load's ready line, read the proxy's figures, then
		# end the hold (SIGINT: the load checks every connection and exits).
		for _ in $(seq 1 3300); do
			grep -q 'idle ready:' "$out.load.log" 2>/dev/null && break
			kill -0 "$lpid" 2>/dev/null || break
			sleep 0.1
		done
		rssr=$(rss_kb "$bal")
		if kill -0 "$lpid" 2>/dev/null; then sleep "$IDLE_SETTLE"; fi
		if kill -0 "$lpid" 2>/dev/null; then
			rss1=$(rss_kb "$bal") fd1=$(fds "$bal")
		else
			say "$proxy $work $s: the load ended before IDLE_SETTLE passed: no held RSS and fds"
		fi
		if [[ -n $PROFILE && $s == tlsedge ]]; then pprof "$proxy-$work-r$round.heap.pprof" "heap?gc=1"; fi
		kill -INT "$lpid" 2>/dev/null || true
	fi
	wait "$lpid" || say "$proxy $work $s: tlsedge-load exited $? ($(tail -1 "$out.load.log"))"
	if [[ -n $ppid ]]; then wait "$ppid" || true; fi
	read -r b1 t1 < <(sysbusy)
	e1=$(server_ticks)
	l1=$(treeticks "$bal")
	[[ -s $out.load.json ]] || return 0
	jq -c --argjson hz "$HZ" --argjson busy $((b1 - b0)) --argjson total $((t1 - t0)) \
		--argjson srv $((e1 - e0)) --argjson bal "$(if [[ -n $bal ]]; then echo $((l1 - l0)); else echo null; fi)" \
		--arg setup "$s" --arg proxy "$proxy" --arg work "$work" --argjson round "$round" \
		--argjson rss0 "$rss0" --argjson rssr "$rssr" --argjson rss1 "$rss1" --argjson fd0 "$fd0" --argjson fd1 "$fd1" '
		. + {setup: $setup, proxy: $proxy, workload: $work, round: $round,
		     server_cpu_s: ($srv / $hz), balancer_cpu_s: (if $bal == null then null else $bal / $hz end),
		     rss_kb_base: $rss0, rss_kb_ready: $rssr, rss_kb_held: $rss1, fds_base: $fd0, fds_held: $fd1}
		| . + {other_cpu_pct: ([0, ($busy / $hz - .cpu_s - .server_cpu_s - (.balancer_cpu_s // 0))] | max
		        / ($total / $hz) * 100)}' "$out.load.json" >"$out.run.json"
	say "$proxy $work $s round $round: $(tail -1 "$out.load.log" | cut -c1-220)"
}

read -r -a SETUP_LIST <<<"$SETUPS"
NSETUPS=${#SETUP_LIST[@]}
for round in $(seq 1 "$ROUNDS"); do
	for proxy in $PROXIES; do
		for work in $MODES; do
			for i in $(seq 0 $((NSETUPS - 1))); do
				s=${SETUP_LIST[$(((i + round - 1) % NSETUPS))]}
				if [[ $s == direct && ($proxy == reencrypt || $work == idle || $work == idlews) ]]; then continue; fi
				if [[ $proxy == passthrough && $work == idlews ]]; then continue; fi # no HTTP to upgrade
				one "$proxy" "$work" "$s" "$round"
			done
		done
	done
done
say "load average $(cut -d' ' -f1-3 /proc/loadavg)"

{
	echo "median of $ROUNDS round(s); $(jq -r .knobs "$RES/meta.json")"
	echo
	"$LOAD" -report "$RES" -report-json "$OUT"
	echo
	echo "Rates are the client's; CPU, RSS and fds are the proxy's own (/proc), per operation or per idle connection."
	echo "passthrough keep-alive requests are $ECHO_SIZE-byte echo round trips; terminate and reencrypt ones HTTP/1.1 GETs."
	echo "Idle WebSockets: an HTTP/1.1 upgrade through the proxy each, one message echoed each way, then held; the final round trip is another message."
	echo "Ratios are tlsedge / the best of the other proxies: above 1 is worse for CPU, RSS and fds, better for rates and held."
	echo "other CPU %: the highest share of both CPUs used by processes outside a run, of the runs behind the row."
	for p in $PROXIES; do
		f=$(find "$RES" -name "$p.keepalive.tlsedge.1.run.json" | head -1)
		if [[ -n $f ]]; then echo "$p: $(jq -r '.tls + (if .identity then ", the server saw: " + .identity else "" end)' "$f")"; fi
	done
} | tee "$TABLE"
say "table in $TABLE, every run in $OUT"
