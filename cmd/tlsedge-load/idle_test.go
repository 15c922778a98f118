package main

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// echoFor starts the TLS echo server (client certificates required) on a
// throwaway PKI and returns the PKI folder and its address.
func echoFor(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if err := writePKI(dir, "echo.load.test"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, &options{serve: addr, cert: filepath.Join(dir, "server.pem"),
			key: filepath.Join(dir, "server-key.pem"), clientCA: filepath.Join(dir, "ca.pem")})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	waitListen(t, addr)
	return dir, addr
}

func waitListen(t *testing.T, addr string) {
	t.Helper()
	for range 500 {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("nothing listens on %s", addr)
}

func idleOpts(dir, addr, sni, mode string, n int) *options {
	return &options{
		mode: mode, addr: addr, sni: sni, conc: n, dialers: 8, streams: 1, path: "/",
		ca: filepath.Join(dir, "ca.pem"), cert: filepath.Join(dir, "client.pem"), key: filepath.Join(dir, "client-key.pem"),
		tlsVersion: "1.3", dur: time.Minute,
	}
}

// runIdle runs an idle mode; once the connections are up it calls during
// (if set) and then ends the hold, as compare.sh's signal does.
func runIdle(t *testing.T, o *options, during func(up, failed int64)) *result {
	t.Helper()
	if err := o.checkLoad(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	readyCalls := 0
	o.ready = func(up, failed int64) {
		readyCalls++
		if during != nil {
			during(up, failed)
		}
		cancel()
	}
	res, err := load(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if readyCalls != 1 {
		t.Errorf("ready called %d times; want once", readyCalls)
	}
	t.Log(res.human())
	return res
}

func TestIdleEchoHoldsEveryConnection(t *testing.T) {
	t.Parallel()
	dir, addr := echoFor(t)
	var upAtReady int64 = -1
	res := runIdle(t, idleOpts(dir, addr, "echo.load.test", "idle", 40), func(up, _ int64) { upAtReady = up })
	switch {
	case upAtReady != 40:
		t.Errorf("ready said %d up; want 40", upAtReady)
	case res.Ops != 40 || res.Held != 40 || res.Attempted != 40 || res.Errors != 0 || res.Conns != 40:
		t.Errorf("ops %d held %d attempted %d errors %d conns %d (first error %q); want 40 40 40 0 40",
			res.Ops, res.Held, res.Attempted, res.Errors, res.Conns, res.FirstError)
	case res.Bytes != 80:
		t.Errorf("%d bytes echoed; want 80 (one byte per connection, twice)", res.Bytes)
	case res.GaveUp:
		t.Error("gave up; want not")
	}
}

func TestIdleHTTPHoldsEveryConnection(t *testing.T) {
	t.Parallel()
	dir, h := httpsServer(t)
	res := runIdle(t, idleOpts(dir, h.ln.Addr().String(), "api.load.test", "idle-http", 30), nil)
	switch {
	case res.Ops != 30 || res.Held != 30 || res.Errors != 0 || res.Conns != 30:
		t.Errorf("ops %d held %d errors %d conns %d (first error %q); want 30 30 0 30", res.Ops, res.Held, res.Errors, res.Conns, res.FirstError)
	case res.Bytes != 60*int64(len(httpBody)):
		t.Errorf("%d body bytes; want %d (two GETs per connection)", res.Bytes, 60*len(httpBody))
	case res.Identity != "tls CN=tlsedge-load client" || res.Proto != "HTTP/1.1":
		t.Errorf("identity %q proto %q; want the client's CN over HTTP/1.1", res.Identity, res.Proto)
	case h.s.requests.Load() != 60:
		t.Errorf("server answered %d requests; want 60", h.s.requests.Load())
	}
}

// TestIdleCountsConnectionsLostWhileHeld: the server closes some held
// connections before the final check; held counts only the others.
func TestIdleCountsConnectionsLostWhileHeld(t *testing.T) {
	t.Parallel()
	dir, addr := echoFor(t)
	// A relay in front of the echo server that can cut its connections.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var mu sync.Mutex
	var clients []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
			go pipeClose(c, s)
			go pipeClose(s, c)
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range clients {
			c.Close()
		}
	})
	res := runIdle(t, idleOpts(dir, ln.Addr().String(), "echo.load.test", "idle", 20), func(up, _ int64) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range clients[:7] {
			c.Close()
		}
	})
	if res.Ops != 20 || res.Held != 13 || res.Errors != 0 {
		t.Errorf("ops %d held %d errors %d; want 20 opened, 13 held (7 cut), 0 errors", res.Ops, res.Held, res.Errors)
	}
}

func pipeClose(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	dst.Close()
	src.Close()
}

// TestIdleGivesUpAfterFailuresInARow: a server that closes every connection
// at once; the opening stops after giveUp failures in a row instead of
// trying all of -c.
func TestIdleGivesUpAfterFailuresInARow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := writePKI(dir, "echo.load.test"); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	o := idleOpts(dir, ln.Addr().String(), "echo.load.test", "idle", 1000)
	o.dialers = 1 // one at a time: exactly giveUp attempts
	cfg, err := clientConfig(o)
	if err != nil {
		t.Fatal(err)
	}
	r := &runner{o: o, tls: cfg, start: time.Now()}
	ctx, cancel := context.WithCancel(context.Background())
	res := &result{Mode: o.mode, Concurrency: o.conc}
	r.idleRun(ctx, res, 25, func(int64, int64) { cancel() })
	if res.Ops != 0 || res.Held != 0 || res.Attempted != 25 || res.Errors != 25 || !res.GaveUp {
		t.Errorf("ops %d held %d attempted %d errors %d gave up %v; want 0 0 25 25 true", res.Ops, res.Held, res.Attempted, res.Errors, res.GaveUp)
	}
}

// TestIdleModeFlags: the checks of the idle modes' flags.
func TestIdleModeFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		edit func(*options)
		ok   bool
	}{
		{"idle", func(o *options) {}, true},
		{"idle-http", func(o *options) { o.mode = "idle-http" }, true},
		{"size", func(o *options) { o.size = 64 }, false},
		{"dialers 0", func(o *options) { o.dialers = 0 }, false},
		{"path", func(o *options) { o.mode, o.path = "idle-http", "x" }, false},
		{"h2", func(o *options) { o.h2 = true }, false},
		{"idle-ws", func(o *options) { o.mode = "idle-ws" }, true},
		{"idle-ws size", func(o *options) { o.mode, o.size = "idle-ws", 4 }, false},
		{"idle-ws path", func(o *options) { o.mode, o.path = "idle-ws", "ws" }, false},
	} {
		o := idleOpts("d", "127.0.0.1:1", "x", "idle", 10)
		tc.edit(o)
		if err := o.checkLoad(); (err == nil) != tc.ok {
			t.Errorf("%s: checkLoad = %v; want ok %v", tc.name, err, tc.ok)
		}
	}
}
