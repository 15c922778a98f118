#!/usr/bin/env bash
# compare-terminate.sh: compare.sh for terminate and reencrypt only (the
# proxies that end TLS: client certificates, identity forwarded as a
# header). Every knob of compare.sh applies; see it and BENCHMARKS.md.
#
#   bash cmd/tlsedge-load/compare-terminate.sh      # or: make compare-terminate
set -euo pipefail
PROXIES=${PROXIES:-terminate reencrypt} exec bash "$(dirname "${BASH_SOURCE[0]}")/compare.sh"
