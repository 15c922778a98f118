# shellcheck shell=bash
# lib.sh: what compare.sh and compare-terminate.sh share. Sourced, not run.
#
# The caller sets, before sourcing: ROOT (the checkout), TMP (its temp
# folder), KEEP, SRC, PIN, QUIET_PCT, QUIET_MAX; after: SETUPS and PAIRS for
# the table (see row). Every process the caller starts goes into PIDS, and
# cleanup (trapped on EXIT here) kills them all, by PID, and removes TMP.

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

# val SETUP MODE FIELD: the median over the rounds of $TMP/res/SETUP.MODE.N.json
# ("" when missing).
val() {
	local files=("$TMP/res/$1.$2".*[0-9].json)
	[[ -e ${files[0]} ]] || return 0
	jq -rs --arg f "$3" '[.[] | .[$f] | select(. != null)] | sort
		| if length == 0 then "" elif length % 2 == 1 then .[length / 2 | floor]
		  else (.[length / 2 - 1] + .[length / 2]) / 2 end' "${files[@]}"
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }
num() { awk -v a="$1" -v p="$2" 'BEGIN { if (a == "") print "-"; else printf "%.*f", p, a }'; }

# pairs CANDIDATES...: the A/B ratios whose both setups are in SETUPS.
pairs() {
	local pair a b
	PAIRS=()
	for pair in "$@"; do
		a=${pair%/*} b=${pair#*/}
		if [[ " $SETUPS " == *" $a "* && " $SETUPS " == *" $b "* ]]; then PAIRS+=("$pair"); fi
	done
}
short() { sed -e 's/haproxy-splice/hsplice/; s/tlsedge/edge/; s/haproxy/hapx/; s/direct/dir/' <<<"$1"; }

header() { # header TITLE: the table's first line
	local s pair
	printf "%-30s" "$1"
	for s in $SETUPS; do printf " %14s" "$s"; done
	for pair in "${PAIRS[@]}"; do printf " %12s" "$(short "$pair")"; done
	echo
}

row() { # row LABEL MODE FIELD DECIMALS [noratio]
	local label=$1 mode=$2 field=$3 dec=$4 s pair
	declare -A v
	printf "%-30s" "$label"
	for s in $SETUPS; do
		v[$s]=$(val "$s" "$mode" "$field")
		printf " %14s" "$(num "${v[$s]}" "$dec")"
	done
	if [[ -z ${5:-} ]]; then
		for pair in "${PAIRS[@]}"; do
			printf " %12s" "$(ratio "${v[${pair%/*}]}" "${v[${pair#*/}]}")"
		done
	fi
	echo
}
