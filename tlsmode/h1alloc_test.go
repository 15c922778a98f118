package tlsmode

import (
	"mime"
	"testing"
)

// A request head that fits is checked without building the violations it
// did not commit: only the strings of the method and the Host are
// allocated (a head over max_header_bytes, a long chunk line, a large
// trailer section each make theirs when found).
func TestH1GuardHeadAllocs(t *testing.T) {
	head := []byte("GET /items?id=7 HTTP/1.1\r\nHost: api.example.com\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n")
	g := newH1Guard(nil, 1<<20, 0)
	allocs := testing.AllocsPerRun(200, func() {
		g.st, g.head, g.scan, g.r, g.w, g.ready, g.lastHost = h1Head, h1HeadInfo{}, 0, 0, len(head), 0, ""
		g.buf = head
		if ok, v := g.step(); !ok || v != nil { // the whole head, in one step
			t.Fatalf("step on a good head: %v, %v", ok, v)
		}
	})
	if g.lastHost != "api.example.com" || g.ready != len(head) {
		t.Fatalf("after the head: host %q, %d bytes ready; want api.example.com, %d", g.lastHost, g.ready, len(head))
	}
	if allocs > 2 {
		t.Errorf("checking a request head allocates %v times, want at most 2 (the method and the Host)", allocs)
	}
}

// eventStream says what mime.ParseMediaType says of text/event-stream.
func TestEventStreamAsParseMediaType(t *testing.T) {
	for _, ct := range []string{
		"", "text/event-stream", "TEXT/Event-Stream", " text/event-stream ", "text/event-stream; charset=utf-8",
		"text/event-stream;", "text/event-stream; =bad", "text/event-streamx", "text/event-strea",
		"application/json", "text/html; charset=utf-8", "text/event-stream, text/html", "\ttext/event-stream",
		"\u00a0text/event-stream", "\ntext/event-stream", "\r\n text/event-stream", "text/event-stream\u00a0",
	} {
		mt, _, _ := mime.ParseMediaType(ct)
		if got, want := eventStream(ct), mt == "text/event-stream"; got != want {
			t.Errorf("eventStream(%q) = %v, mime.ParseMediaType says %v", ct, got, want)
		}
	}
}
