package e2e

import (
	"crypto/tls"
	"io"
	"testing"
)

// Issue, timeouts: "for http routes a per-write deadline (write_timeout,
// default 60s) so a client that stops reading a response is cut and its
// server slot freed", over HTTP/2 too: a client that stops reading grants
// no more window, so no socket write ever blocks; each stream has its own
// deadline and the stream is reset.
func TestWriteTimeoutCutsStalledHTTP2Stream(t *testing.T) {
	t.Parallel()
	p := writeTermFiles(t)
	x := startBigStreamServer(t, "h2-x")
	route := termRoute(p, "api.example.com", "terminate", "http", "dl", "", nil)
	route["http"] = cfgMap{"write_timeout": "1s"}
	cfg := cfgMap{
		"log":       cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "routes": []any{route}}},
		"backends":  []any{cfgMap{"name": "dl", "balance": "leastconn", "health": cfgMap{"type": "none"}, "servers": servers(x.Addr())}},
	}
	useTermFiles(t, cfg, p)
	a := newAdmin(t, withAdmin(t, cfg))
	e := runEdge(t, cfg)
	client := httpsClient(e.addr, &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool()}, true)

	resp, err := client.Get("https://api.example.com/big")
	if err != nil {
		t.Fatalf("GET /big over HTTP/2: %v", err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("GET /big: %s; want HTTP/2", resp.Proto)
	}
	// Read nothing of the body: tlsedge fills the stream's window, then waits.
	var streams []bigResult
	if !poll(waitLong, func() bool { streams = x.bigStreams(); return len(streams) > 0 }) {
		t.Fatalf("the /big stream was still running %v after its HTTP/2 client stopped reading (write_timeout 1s)", waitLong)
	}
	if streams[0].err == nil {
		t.Errorf("the /big stream: all %d bytes written; want it cut short", streams[0].sent)
	}
	req := e.requestLine(t, "/big")
	if got, want := req.str("reason"), "client timeout: read nothing of this response for write_timeout 1s"; got != want {
		t.Errorf("request line of /big %v: reason got %q; want %q", req, got, want)
	}
	if !poll(waitLong, func() bool { return a.server("dl", x.Addr()).Active == 0 }) {
		t.Errorf("the server's slot was not freed: active %d; want 0", a.server("dl", x.Addr()).Active)
	}
	if n, err := io.Copy(io.Discard, resp.Body); err == nil || n >= bigSize {
		t.Errorf("the client reading on: %d bytes, %v; want the stream reset before the end", n, err)
	}
	// The connection itself goes on: the next request on it works.
	r2, err := client.Get("https://api.example.com/small")
	if err != nil {
		t.Fatalf("the next request on the HTTP/2 connection: %v", err)
	}
	r2.Body.Close()
}
