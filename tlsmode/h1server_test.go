package tlsmode

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

// A request with an Upgrade field turns the guard off after its head (what
// follows may be another protocol): any answer but a 101 must close the
// connection, also when the server sent a 1xx first (relaying it clears
// the handler's header, the "Connection: close" set for this with it). A
// request with bare LF after it must not be answered.
func TestH1UpgradeRequestNon101Closes(t *testing.T) {
	for _, up := range []string{"Connection: Upgrade\r\nUpgrade: websocket\r\n", "Upgrade: foo\r\n"} {
		t.Run(up[:len(up)-2], func(t *testing.T) {
			backend := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/up" {
					w.Header().Set("Link", "</a.css>; rel=preload")
					w.WriteHeader(http.StatusEarlyHints)
					_, _ = io.WriteString(w, "no upgrade here")
					return
				}
				_, _ = fmt.Fprintf(w, "served %s", r.URL.Path)
			})
			h := startHarden(t, HTTPOptions{}, backend)
			go func() { _, _ = io.WriteString(h.client, "GET /up HTTP/1.1\r\nHost: a.example.com\r\n"+up+"\r\n") }()
			var final *http.Response
			for final == nil {
				resp, err := http.ReadResponse(h.br, nil)
				if err != nil {
					t.Fatalf("reading the answer: %v", err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode >= 200 {
					final = resp
				}
			}
			if final.StatusCode != http.StatusOK || !final.Close {
				t.Errorf("final answer %d, Connection: close %v; want 200 with Connection: close", final.StatusCode, final.Close)
			}
			go func() { _, _ = io.WriteString(h.client, "GET /second HTTP/1.1\nHost: a.example.com\n\n") }()
			if resp, err := http.ReadResponse(h.br, nil); err == nil {
				t.Errorf("a request after the refused upgrade was answered: %d; want the connection closed", resp.StatusCode)
			}
		})
	}
}

// A handler that hands the request body to another goroutine (as
// ReverseProxy does to the transport) and returns while that goroutine is
// blocked reading it: the connection closes, the reader's read ends, and
// the connection's buffers are not given back to the pool (another
// connection would get a buffer that read is still filling).
func TestH1BuffersKeptWhileBodyRead(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server := <-accepted
	readErr := make(chan error, 1)
	blocked := make(chan struct{})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			buf := make([]byte, 100)
			n, err := r.Body.Read(buf) // "hello": then blocked on the next chunk
			if err != nil || n == 0 {
				readErr <- fmt.Errorf("first read: %d, %v", n, err)
				return
			}
			close(blocked)
			for {
				if _, err := r.Body.Read(buf); err != nil {
					readErr <- err
					return
				}
			}
		}()
		select {
		case <-blocked:
		case <-time.After(10 * time.Second):
		}
		time.Sleep(50 * time.Millisecond) // let the reader block in its read
		_ = r.Body.Close()
		_, _ = io.WriteString(w, "early")
	})
	lim := HTTPLimits{MaxHeaderBytes: 1 << 20, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 5 * time.Second,
		ReadBodyTimeout: 5 * time.Second}.WithDefaults()
	p := &HTTPProxy{limits: lim, errorLog: log.New(io.Discard, "", 0)}
	g := newH1Guard(server, p.limits.MaxHeaderBytes, p.limits.ReadHeaderTimeout)
	h := &h1Conn{p: p, handler: handler, cs: &connState{}, g: g, start: time.Now(), remain: h1NoLimit, base: context.Background()}
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.serve(false)
	}()
	_, _ = io.WriteString(client, "POST /v HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
	_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
	answer, _ := io.ReadAll(client) // the answer, then the close
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end")
	}
	select {
	case err := <-readErr:
		if err == nil {
			t.Error("the body reader's read ended without an error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the body reader is still blocked after the connection ended")
	}
	if h.br == nil || h.bw == nil {
		t.Errorf("buffers given back to the pool (reader %v, writer %v) while a body read was in flight; want both kept", h.br != nil, h.bw != nil)
	}
	if want := "Connection: close"; !containsLine(string(answer), want) {
		t.Errorf("answer %q; want a %q field (the body's end is unknown)", answer, want)
	}
}

func containsLine(s, line string) bool {
	for len(s) > 0 {
		i := 0
		for i < len(s) && s[i] != '\n' {
			i++
		}
		l := s[:i]
		if len(l) > 0 && l[len(l)-1] == '\r' {
			l = l[:len(l)-1]
		}
		if l == line {
			return true
		}
		if i == len(s) {
			break
		}
		s = s[i+1:]
	}
	return false
}
