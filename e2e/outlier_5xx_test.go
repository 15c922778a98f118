package e2e

import (
	"crypto/tls"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// A server of a protocol http route that answers every request with 500 is
// ejected after outlier.consecutive_5xx answers in a row (logged with
// reason 5xx, counted), and gets none of the next requests while ejected,
// which the other server answers.
func TestOutlierEject5xx(t *testing.T) {
	t.Parallel()
	good := startHTTPBackend(t, "o5-good")
	var badHits atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	bad := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		badHits.Add(1)
		http.Error(w, "broken", http.StatusInternalServerError)
	})}
	go func() { _ = bad.Serve(ln) }()
	t.Cleanup(func() { bad.Close() })

	srv, err := thePKI.serverCert("o5")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := srv.WriteFiles(t.TempDir(), "o5")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{"api.example.com"}, "mode": "terminate", "protocol": "http",
				"tls": cfgMap{"cert": certFile, "key": keyFile}, "backend": "o5"},
		}}},
		"backends": []any{cfgMap{"name": "o5", "balance": "roundrobin", "health": cfgMap{"type": "none"},
			"outlier": cfgMap{"consecutive_5xx": 3, "consecutive_failures": 0, "base_ejection_time": "10m", "max_ejection_percent": 50},
			"servers": []any{cfgMap{"address": good.Addr()}, cfgMap{"address": ln.Addr().String()}},
			"retries": 0,
		}},
	}
	adminAddr := withAdmin(t, cfg)
	e := runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)
	client := &http.Client{Timeout: waitLong, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{ServerName: "api.example.com", RootCAs: thePKI.serverCA.Pool()}}}
	get := func() int { return ohGet(t, client, e.addr) }
	for i := 0; badHits.Load() < 3; i++ {
		if i == 30 {
			t.Fatalf("30 requests, the failing server answered %d; want 3", badHits.Load())
		}
		get()
	}
	l := e.waitLog(t, "the 5xx server's ejection", agIsEjection(ln.Addr().String()))
	if l.str("reason") != "5xx" {
		t.Errorf("ejection log %v; want reason 5xx", l)
	}
	if v := admin.metrics().value("tlsedge_server_ejections_total", map[string]string{"backend": "o5", "server": ln.Addr().String(), "reason": "5xx"}); v != 1 {
		t.Errorf("tlsedge_server_ejections_total{reason=5xx} = %v; want 1", v)
	}
	before := badHits.Load()
	for i := range 10 {
		if code := get(); code != 200 {
			t.Errorf("request %d while the failing server is ejected: %d; want 200 from the other", i, code)
		}
	}
	if n := badHits.Load() - before; n != 0 {
		t.Errorf("the ejected server answered %d of 10 requests; want 0", n)
	}
}
