#!/bin/sh
# Development aid only (never used by CI): stands in for the `warren` binary
# so the warren-side plumbing of the e2e harness (running as nobody, waiting
# for the socket, `-netdev stream`, pcap) can be exercised before warren
# works. Translates the warren options the harness passes into passt ones:
#
#   WARREN_BIN=$PWD/tests/tools/passt-shim.sh cargo test -p warren-tests --test gateway
#
# passt cannot forward DNS to a non-53 port, so its DNS forwarder points at
# 127.0.0.1 (port 53, loopback only) and the DNS check is expected to fail.
set -eu
args="-f -1 -a 10.0.2.15 -n 24 -g 10.0.2.2 --dns-forward 10.0.2.3"
sock=""
while [ $# -gt 0 ]; do
  case "$1" in
    --socket) sock="$2"; shift 2 ;;
    --pcap) args="$args -p $2"; shift 2 ;;
    --mtu) args="$args -m $2"; shift 2 ;;
    --dns-search) args="$args -S $2"; shift 2 ;;
    --dns-upstream) shift 2 ;;
    *) echo "passt-shim: unsupported option $1" >&2; exit 2 ;;
  esac
done
# passt reads its DNS upstream from resolv.conf unless given; keep it on
# loopback so nothing ever leaves the machine.
exec passt $args --dns 127.0.0.1 -s "$sock"
