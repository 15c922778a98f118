// Command tlsedge-load measures TLS load through tlsedge (or any TCP/TLS
// balancer) and against servers directly, with a real crypto/tls client.
// The same binary is the TLS echo server the load talks to, and writes the
// throwaway PKI both use, so a comparison needs nothing else.
//
// Load (one of -mode; -d is required, at most 5m):
//
//	tlsedge-load -mode throughput -addr 127.0.0.1:8443 -sni echo.test -ca ca.pem -cert client.pem -key client-key.pem -c 4 -size 64MiB -d 10s
//	tlsedge-load -mode handshake  -addr ... -c 8 -d 10s
//	tlsedge-load -mode echo       -addr ... -c 16 -size 64 -d 10s
//
// HTTPS (HTTP/1.1 keep-alive, or HTTP/2 with -h2; -streams requests in
// flight per HTTP/2 connection) and one new connection per request:
//
//	tlsedge-load -mode http           -addr ... -c 16 -d 10s
//	tlsedge-load -mode http -h2       -addr ... -c 4 -streams 4 -d 10s
//	tlsedge-load -mode handshake-http -addr ... -c 8 -d 10s
//
// Idle connections: open -c (-dialers at a time), one round trip each (a
// byte echoed; idle-http: one keep-alive GET of -path; idle-ws: a WebSocket
// upgrade of -path and one message echoed), hold them, print
// "tlsedge-load: idle ready: N connections up, F failed" on stderr, wait for
// SIGINT/SIGTERM or -d, then one more round trip on each (held):
//
//	tlsedge-load -mode idle      -addr ... -c 9000 -d 5m
//	tlsedge-load -mode idle-http -addr ... -c 9000 -d 5m
//	tlsedge-load -mode idle-ws   -addr ... -c 9000 -d 5m
//
// The table of compare.sh's recorded runs (see report.go):
//
//	tlsedge-load -report DIR [-report-json results.json]
//
// Echo server (the backend; -client-ca makes client certificates required):
//
//	tlsedge-load -serve 127.0.0.1:9443 -cert server.pem -key server-key.pem -client-ca ca.pem
//
// HTTP servers: plain HTTP (the backend behind a balancer), or with -cert and
// -key the HTTPS server to compare a balancer with (Go net/http; -client-ca:
// tls.RequireAndVerifyClientCert):
//
//	tlsedge-load -serve-http 127.0.0.1:9080
//	tlsedge-load -serve-http 127.0.0.1:9443 -cert server.pem -key server-key.pem -client-ca ca.pem
//
// Throwaway PKI (ca.pem, server.pem, server-key.pem, client.pem, client-key.pem):
//
//	tlsedge-load -pki DIR -sni echo.test
//
// # Protocol
//
// One protocol for the handshake, throughput and echo modes: after the
// handshake the server echoes every byte it reads until the client's
// close_notify (or EOF), then sends its own close_notify and closes. Session
// tickets are off on the server and the client keeps no session cache, so
// every handshake is a full one.
//
//   - handshake: per iteration dial TCP, full handshake, write 1 byte and
//     read it back, close. The echoed byte proves the server finished its
//     side too: in TLS 1.3 a client's handshake completes before the server
//     has checked the client certificate. Latency covers dial to echo.
//   - throughput: each of -c workers opens a connection, writes -size bytes
//     (64 KiB writes) while a second goroutine reads the echo, then
//     closes and starts again until -d ends. MB/s is the payload echoed back
//     to the client per second (1 MB = 10^6 bytes); the same amount went up,
//     so a proxy in the middle moves twice this figure.
//   - echo: each of -c workers keeps one connection and does -size byte
//     round trips (write, read the echo back) until -d ends; latency is one
//     round trip. A failed connection is counted and dialled again.
//
// The http modes speak HTTP instead, through net/http's Transport over the
// same crypto/tls client (ALPN offers only http/1.1, or h2 with -h2, so a
// server cannot quietly pick the other), and GET -path (default /):
//
//   - http: HTTP/1.1: one Transport with -c keep-alive connections
//     (MaxConnsPerHost = -c), -c workers each with one request in flight;
//     HTTP/2: -c Transports of one connection each, -streams workers on
//     each. Latency is one request to the end of its response body; a
//     response other than 200 is an error. conns in the result is the
//     connections opened: -c when keep-alive held.
//   - handshake-http: Connection: close, so every request dials a new
//     connection (full handshake, no resumption) and the result is
//     connections per second; latency covers dial to the end of the body.
//
// The -serve-http servers answer every request with 100 bytes and an
// X-Load-Identity header saying who they think the client is ("tls CN=..."
// from a verified client certificate, "xfcc <length>B Subject=..." from an
// X-Forwarded-Client-Cert a balancer set, or "none"); the result carries the
// first response's value, so a run shows the identity went through. They
// accept WebSocket upgrades (github.com/coder/websocket; the 101 carries
// the same header) and echo every message back.
//
// idle-ws opens each connection with an HTTP/1.1 WebSocket handshake (GET
// -path with Upgrade: websocket, Sec-WebSocket-Key and -Version;
// coder/websocket's client over the same crypto/tls client, ALPN http/1.1)
// that must be answered 101 with the right Sec-WebSocket-Accept, then sends
// a 4-byte text message that must come back as it went; the final check
// sends another.
//
// Output: one human line on stdout; with -json a JSON object on stdout and
// the human line on stderr. The JSON carries cpu_s, the CPU seconds the load
// itself used (user+system), so a script can tell how much of the machine
// went to the client. Exit status 1 when nothing got through (no operation,
// no byte) or more than 1% of attempts failed, 2 on bad flags.
//
// compare.sh beside this file (make compare) puts direct, tlsedge, HAProxy
// and nginx side by side on one machine, for passthrough, terminate and
// reencrypt; BENCHMARKS.md at the top of the repository describes it.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// maxLoad bounds -d for load modes.
const maxLoad = 5 * time.Minute

type options struct {
	addr, sni         string
	ca, cert, key     string
	clientCA          string
	insecure          bool
	conc              int
	dur               time.Duration
	mode              string
	size              byteSize
	tlsVersion, curve string
	json              bool
	label             string
	h2                bool
	streams           int
	path              string
	dialers           int
	ready             func(up, failed int64) // idle modes: called once the connections are up

	report, reportJSON string

	serve     string
	serveHTTP string
	pki       string
}

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	var o options
	fs := flag.NewFlagSet("tlsedge-load", flag.ContinueOnError)
	fs.StringVar(&o.addr, "addr", "", "host:port to load (the server, or a balancer in front of it)")
	fs.StringVar(&o.sni, "sni", "", "server name sent in the ClientHello and verified (default: host of -addr); with -pki, the name the server certificate is for")
	fs.StringVar(&o.ca, "ca", "", "PEM file of the CA that signed the server certificate (default: system roots)")
	fs.StringVar(&o.cert, "cert", "", "PEM certificate: the client certificate, or with -serve the server's")
	fs.StringVar(&o.key, "key", "", "PEM private key of -cert")
	fs.StringVar(&o.clientCA, "client-ca", "", "with -serve: PEM CA file; client certificates signed by it are required")
	fs.BoolVar(&o.insecure, "insecure", false, "do not verify the server certificate")
	fs.IntVar(&o.conc, "c", 4, "concurrency: workers, each with its own connection")
	fs.DurationVar(&o.dur, "d", 0, "duration of the load (required, at most 5m); with -serve, stop after it (0 = at SIGINT/SIGTERM)")
	fs.StringVar(&o.mode, "mode", "throughput", "handshake | throughput | echo | http | handshake-http | idle | idle-http | idle-ws")
	fs.Var(&o.size, "size", "bytes per connection (throughput, default 64MiB) or per round trip (echo, default 64); suffixes KiB MiB GiB")
	fs.StringVar(&o.tlsVersion, "tls", "", "force the TLS version: 1.2 or 1.3 (default: negotiate, which is 1.3)")
	fs.StringVar(&o.curve, "curve", "", "offer only this key exchange: X25519, X25519MLKEM768, P256 (default: Go's list)")
	fs.BoolVar(&o.json, "json", false, "print the result as JSON on stdout (the human line goes to stderr)")
	fs.StringVar(&o.label, "label", "", "name of this run in the output, e.g. direct or tlsedge")
	fs.BoolVar(&o.h2, "h2", false, "http mode: HTTP/2 (ALPN h2) instead of HTTP/1.1")
	fs.IntVar(&o.streams, "streams", 1, "http mode with -h2: requests in flight on each of the -c connections")
	fs.StringVar(&o.path, "path", "/", "http modes: the path to GET")
	fs.IntVar(&o.dialers, "dialers", 64, "idle modes: connections opened at once")
	fs.StringVar(&o.report, "report", "", "print the markdown table of the compare.sh results in this folder and exit")
	fs.StringVar(&o.reportJSON, "report-json", "", "with -report: also write every run and the table as JSON to this file")
	fs.StringVar(&o.serve, "serve", "", "serve TLS echo on this address instead of generating load")
	fs.StringVar(&o.serveHTTP, "serve-http", "", "serve HTTP on this address instead of generating load: plain HTTP, or HTTPS with -cert/-key (client certificates required with -client-ca)")
	fs.StringVar(&o.pki, "pki", "", "write a throwaway PKI into this folder and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "tlsedge-load: unexpected arguments %q\n", fs.Args())
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	switch {
	case o.report != "":
		if err := report(o.report, o.reportJSON, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
			return 1
		}
		return 0
	case o.pki != "":
		if err := writePKI(o.pki, o.sni); err != nil {
			fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
			return 1
		}
		return 0
	case o.serve != "" && o.serveHTTP != "":
		fmt.Fprintln(os.Stderr, "tlsedge-load: -serve and -serve-http go one at a time")
		return 2
	case o.serveHTTP != "":
		if err := serveHTTP(ctx, &o); err != nil {
			fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
			return 1
		}
		return 0
	case o.serve != "":
		if err := serve(ctx, &o); err != nil {
			fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
			return 1
		}
		return 0
	}

	if err := o.checkLoad(); err != nil {
		fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
		return 2
	}
	o.ready = printReady
	res, err := load(ctx, &o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
		return 1
	}
	if o.json {
		fmt.Fprintln(os.Stderr, res.human())
		enc := json.NewEncoder(os.Stdout)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "tlsedge-load:", err)
			return 1
		}
	} else {
		fmt.Println(res.human())
	}
	if (res.Ops == 0 && res.Bytes == 0) || res.Errors*100 > res.Ops+res.Errors || res.Held < res.Ops && isIdle(o.mode) {
		return 1
	}
	return 0
}

func (o *options) checkLoad() error {
	switch {
	case o.addr == "":
		return errors.New("-addr is required: host:port of the server or balancer")
	case o.dur <= 0:
		return errors.New("-d is required: how long to load, e.g. -d 10s")
	case o.dur > maxLoad:
		return fmt.Errorf("-d %s is longer than the maximum %s", o.dur, maxLoad)
	case o.conc < 1:
		return errors.New("-c must be 1 or more")
	case (o.cert == "") != (o.key == ""):
		return errors.New("-cert and -key go together")
	}
	switch o.mode {
	case "handshake":
	case "throughput":
		if o.size == 0 {
			o.size = 64 << 20
		}
	case "echo":
		if o.size == 0 {
			o.size = 64
		}
		// A round trip is written whole before its echo is read, so it must
		// fit in the socket buffers on the way or both ends would block.
		if o.size > 64<<10 {
			return errors.New("-size for echo is one round trip, at most 64KiB; use -mode throughput for bulk")
		}
	case "http", "handshake-http":
		if o.size != 0 {
			return errors.New("-size does not apply to the http modes: the server's response is its own")
		}
		if !strings.HasPrefix(o.path, "/") {
			return fmt.Errorf("-path %q must start with /", o.path)
		}
		if o.mode == "handshake-http" && o.h2 {
			return errors.New("-h2 goes with -mode http: handshake-http does one HTTP/1.1 request per connection")
		}
	case "idle", "idle-http", "idle-ws":
		if o.size != 0 {
			return errors.New("-size does not apply to the idle modes: one byte (idle), one GET (idle-http) or one message (idle-ws) per connection")
		}
		if !strings.HasPrefix(o.path, "/") {
			return fmt.Errorf("-path %q must start with /", o.path)
		}
		if o.dialers < 1 {
			return errors.New("-dialers must be 1 or more")
		}
	default:
		return fmt.Errorf("-mode %q: use handshake, throughput, echo, http, handshake-http, idle, idle-http or idle-ws", o.mode)
	}
	if o.h2 && o.mode != "http" {
		return errors.New("-h2 goes with -mode http")
	}
	if o.streams < 1 || (o.streams > 1 && !o.h2) {
		return errors.New("-streams is 1, or more with -h2 (HTTP/1.1 has one request in flight per connection)")
	}
	if o.size < 0 {
		return errors.New("-size must not be negative")
	}
	return nil
}

func isIdle(mode string) bool { return mode == "idle" || mode == "idle-http" || mode == "idle-ws" }

// byteSize is a flag value taking 64, 64KiB, 64MiB, 1GiB (also K, M, G, KB...
// all binary).
type byteSize int64

func (s *byteSize) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *byteSize) Set(v string) error {
	t := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{
		{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1},
	} {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSuffix(t, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<40)/mult {
		return fmt.Errorf("%q is not a size: write it like 64, 64KiB or 64MiB", v)
	}
	*s = byteSize(n * mult)
	return nil
}
