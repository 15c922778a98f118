package e2e

// The admin endpoint's status page in a real headless browser (Chromium,
// driven by chromedp): it loads with no console error, shows the servers of
// the running edge and its certificate, and a server drained through the
// API shows as draining within a refresh.

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

func TestStatusPageInBrowser(t *testing.T) {
	t.Parallel()
	needTools(t, "chromium")
	// Two servers that accept and hold (health checks are off: nothing
	// needs them to answer).
	var servers []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := newConnGroup(t, "status page server")
		g.serve(ln, func(c net.Conn) { _, _ = c.Read(make([]byte, 1)) })
		t.Cleanup(g.stop)
		servers = append(servers, ln.Addr().String())
	}
	srv, err := thePKI.serverCert("status")
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, err := srv.WriteFiles(t.TempDir(), "status")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cfgMap{
		"listeners": []any{cfgMap{"name": "public", "address": "127.0.0.1:0", "routes": []any{
			cfgMap{"sni": []any{"api.example.com"}, "mode": "terminate", "protocol": "tcp",
				"tls": cfgMap{"cert": certFile, "key": keyFile}, "backend": "pool"},
		}}},
		"backends": []any{cfgMap{"name": "pool", "health": cfgMap{"type": "none"}, "servers": []any{
			cfgMap{"address": servers[0]}, cfgMap{"address": servers[1]},
		}}},
	}
	adminAddr := withAdmin(t, cfg)
	runEdge(t, cfg)
	admin := newAdmin(t, adminAddr)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("chromium"),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-gpu", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	var mu sync.Mutex
	var consoleErrors []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeWarning {
				var args []string
				for _, a := range ev.Args {
					args = append(args, string(a.Value))
				}
				consoleErrors = append(consoleErrors, fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(args, " ")))
			}
		case *runtime.EventExceptionThrown:
			consoleErrors = append(consoleErrors, "exception: "+ev.ExceptionDetails.Text)
		}
	}); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}

	// stateOf is the text of the state cell of a server's row. The page
	// redraws its tables every 2 s, so a node found may be gone when read:
	// that read is tried again.
	stateOf := func(addr string) string {
		sel := chromedp.CSS(fmt.Sprintf(`tr[data-server="pool %s"] td.state`, addr))
		var text string
		var err error
		for range 20 {
			if text, err = chromedp.Run(ctx, chromedp.Text(sel, chromedp.NodeVisible)); err == nil {
				return text
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatalf("reading %s: %v", sel, err)
		return ""
	}
	url := "http://" + adminAddr + "/"
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`tr[data-server]`))); err != nil {
		t.Fatalf("loading %s: %v", url, err)
	}
	title, err := chromedp.Run(ctx, chromedp.Title())
	if err != nil || title != "tlsedge status" {
		t.Errorf("page title %q, %v; want \"tlsedge status\"", title, err)
	}
	for _, s := range servers {
		if got := stateOf(s); got != "up" {
			t.Errorf("server %s shows %q; want up", s, got)
		}
	}
	if err := chromedp.Do(ctx, chromedp.WaitVisible(chromedp.CSS(`#certificates tbody tr td`))); err != nil {
		t.Fatal(err)
	}
	var certText string
	for range 20 { // redrawn every 2 s, as above
		if certText, err = chromedp.Run(ctx, chromedp.Text(chromedp.CSS(`#certificates tbody`))); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(certText, "*.example.com") || !strings.Contains(certText, "file") {
		t.Errorf("the certificates table shows %q; want the route's certificate (*.example.com, from a file)", certText)
	}

	// Drained through the API: the page shows it within a refresh (2 s).
	if code := admin.do("POST", "/api/v1/backends/pool/servers/"+servers[1]+"/drain", nil, nil); code != 200 {
		t.Fatalf("drain: %d", code)
	}
	if !poll(waitLong, func() bool { return stateOf(servers[1]) == "draining" }) {
		t.Errorf("after the drain the page shows %q for %s; want draining", stateOf(servers[1]), servers[1])
	}
	if got := stateOf(servers[0]); got != "up" {
		t.Errorf("the other server shows %q; want up", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Errorf("the page logged errors:\n%s", strings.Join(consoleErrors, "\n"))
	}
}
