# shellcheck shell=bash
# lib.sh: the helpers of compare.sh and ab.sh. Sourced, not run.
#
# The caller sets, before sourcing: ROOT (the checkout), TMP (its temp
# folder), KEEP, SRC, PIN, QUIET_PCT, QUIET_MAX. Every process the caller
# starts goes into PIDS, and cleanup (trapped on EXIT here) kills them all,
# by PID, and removes TMP.

PIDS=()

cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${PIDS[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	if [[ $KEEP == 1 ]]; then
		echo "kept $TMP" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say() { echo "== $*" >&2; }

need() { # need CMD PACKAGE: install PACKAGE with apt-get when CMD is missing
	command -v "$1" >/dev/null && return
	say "installing $2"
	if [[ -z ${APT_UPDATED:-} ]]; then
		apt-get update -qq
		APT_UPDATED=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
}

listening() { ss -Hltn "sport = :$1" | grep -q .; }

free_port() {
	local p _
	for _ in $(seq 1 200); do
		p=$((10000 + RANDOM % 22000))
		if ! listening "$p" && [[ " ${USED_PORTS:-} " != *" $p "* ]]; then
			USED_PORTS="${USED_PORTS:-} $p"
			echo "$p"
			return
		fi
	done
	echo "no free port" >&2
	exit 1
}

wait_port() { # wait_port PORT NAME LOG
	local _
	for _ in $(seq 1 100); do
		listening "$1" && return
		sleep 0.1
	done
	say "$2 did not listen on $1; its log:"
	cat "$3" >&2 || true
	exit 1
}

# cpu ROLE: the taskset prefix when PIN=1 (balancer on CPU 1, the rest on CPU 0).
cpu() {
	[[ $PIN == 1 ]] || return 0
	if [[ $1 == balancer ]]; then echo "taskset -c 1"; else echo "taskset -c 0"; fi
}

# shellcheck disable=SC2034 # HZ and NCPU are for the callers
HZ=$(getconf CLK_TCK) NCPU=$(nproc)
# ticks PID: user+system CPU ticks of a process (0 for no PID).
ticks() {
	[[ -n $1 ]] || { echo 0; return; }
	local s
	s=$(cat "/proc/$1/stat")
	s=${s##*) } # fields after "pid (comm) "; utime and stime are the 12th and 13th
	awk '{ print $12 + $13 }' <<<"$s"
}
# sysbusy: busy and total CPU ticks of the whole machine.
sysbusy() { awk '/^cpu / { b = $2 + $3 + $4 + $7 + $8 + $9; print b, b + $5 + $6 }' /proc/stat; }

# quiet: wait until the rest of the machine leaves the CPU alone (our
# servers are idle between runs), at most QUIET_MAX seconds.
quiet() {
	local waited=0 b0 t0 b1 t1 pct
	while :; do
		read -r b0 t0 < <(sysbusy)
		sleep 1
		read -r b1 t1 < <(sysbusy)
		pct=$(((b1 - b0) * 100 / (t1 - t0 > 0 ? t1 - t0 : 1)))
		if ((pct <= QUIET_PCT)); then
			((waited == 0)) || say "waited ${waited}s for other processes to leave the CPU"
			return
		fi
		if ((waited >= QUIET_MAX)); then
			say "other processes use ${pct}% of the CPU; running anyway (see the other CPU rows)"
			return
		fi
		waited=$((waited + 1))
	done
}

# build: tlsedge and tlsedge-load into $TMP/bin, from the checkout as it is
# (SRC=tree) or from `git archive HEAD` plus this folder (SRC=head).
build() {
	local src=$ROOT
	if [[ $SRC == head ]]; then
		src=$TMP/src
		mkdir -p "$src"
		git -C "$ROOT" archive HEAD | tar -x -C "$src"
		rm -rf "$src/cmd/tlsedge-load"
		cp -r "$ROOT/cmd/tlsedge-load" "$src/cmd/"
	fi
	say "building $SRC ($(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo no-git)) into $TMP/bin"
	(cd "$src" && go build -o "$TMP/bin/tlsedge" ./cmd/tlsedge && go build -o "$TMP/bin/tlsedge-load" ./cmd/tlsedge-load)
}

# tree PID: PID and its children (nginx's master and workers), one a line.
tree() {
	[[ -n $1 && -d /proc/$1 ]] || return 0
	echo "$1"
	pgrep -P "$1" || true
}
# treeticks PID: CPU ticks of PID and its children (0 for no PID).
treeticks() {
	local p sum=0
	for p in $(tree "$1"); do sum=$((sum + $(ticks "$p" 2>/dev/null || echo 0))); done
	echo "$sum"
}
# rss_kb PID: resident memory (VmRSS, KiB) of PID and its children.
rss_kb() {
	local p sum=0 v
	for p in $(tree "$1"); do
		v=$(awk '/^VmRSS:/ { print $2 }' "/proc/$p/status" 2>/dev/null || true)
		sum=$((sum + ${v:-0}))
	done
	echo "$sum"
}
# fds PID: open file descriptors of PID and its children.
fds() {
	local p sum=0
	for p in $(tree "$1"); do sum=$((sum + $(find "/proc/$p/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l))); done
	echo "$sum"
}
# seconds DURATION: a Go duration (5s, 500ms, 1m30s) in whole seconds,
# rounded down; fails on anything else.
seconds() {
	awk -v d="$1" 'BEGIN {
		t = 0
		if (d == "") exit 1
		while (match(d, /^[0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h)/)) {
			p = substr(d, 1, RLENGTH)
			d = substr(d, RLENGTH + 1)
			match(p, /^[0-9.]+/)
			n = substr(p, 1, RLENGTH)
			u = substr(p, RLENGTH + 1)
			t += n * (u == "h" ? 3600 : u == "m" ? 60 : u == "s" ? 1 : u == "ms" ? 0.001 : u == "us" ? 1e-6 : 1e-9)
		}
		if (d != "") exit 1
		printf "%d\n", t
	}'
}
# bytes SIZE: 64, 64KiB, 64MiB, 1GiB as a number of bytes.
bytes() {
	case $1 in
	*GiB) echo $((${1%GiB} << 30)) ;;
	*MiB) echo $((${1%MiB} << 20)) ;;
	*KiB) echo $((${1%KiB} << 10)) ;;
	*) echo $(($1)) ;;
	esac
}

# tlsedge's config (compare.sh, ab.sh): a listener for one mode, and a
# backend, with no limit the peers do not have. They read SNI and PKI.
edge_listener() { # edge_listener NAME PORT MODE BACKEND
	cat <<EOF
  - name: $1
    address: "127.0.0.1:$2"
    # One client address opens every connection: the per-address limits,
    # the listener's cap and max_handshakes would refuse a benchmark; the
    # peers have none of them.
    max_connections: 0
    max_connections_per_ip: 0
    connection_rate_per_ip: 0
    max_handshakes: 0
    routes:
      - sni: ["$SNI"]
        mode: $3
        backend: $4
EOF
	[[ $3 == passthrough ]] && return # the bytes as they come: no TLS, no HTTP here
	cat <<EOF
        protocol: http
        identity: xfcc
        http:
          idle_timeout: 10m
        tls:
          cert: $PKI/server.pem
          key: $PKI/server-key.pem
          client_auth: require
          client_ca: $PKI/ca.pem
          session_ticket_rotation: "off"
EOF
}
edge_backend() { # edge_backend NAME PORT [TLS-KEY...]: TLS-KEY "key: value" lines of its tls map
	cat <<EOF
  - name: $1
    max_connections_per_server: 0
    servers:
      - address: "127.0.0.1:$2"
    health:
      type: none       # as the peers: no checks
EOF
	(($# > 2)) || return 0
	echo "    tls:"
	printf '      %s\n' "${@:3}"
}

# start_server NAME ARGS...: a tlsedge-load server ($LOAD), logging to
# $TMP/NAME.log, in PIDS and SERVERS.
start_server() {
	local name=$1
	shift
	# shellcheck disable=SC2046 # $(cpu) is a prefix of words, or none
	$(cpu rest) "$LOAD" "$@" -d 3h 2>"$TMP/$name.log" &
	PIDS+=("$!")
	SERVERS+=("$!")
}
