package tlsmode

// How the lean forward copies an answer's body to the client: a stream
// (text/event-stream, or no Content-Length) is flushed after every write.

import (
	"io"
	"mime"
	"net/http"
	"strings"
)

// eventStream reports whether a Content-Type is text/event-stream
// (ReverseProxy's test: mime.ParseMediaType). Parsed only when it starts
// so: the parse allocates, and most answers are something else.
func eventStream(ct string) bool {
	const es = "text/event-stream"
	if t := strings.TrimSpace(ct); len(t) < len(es) || !strings.EqualFold(t[:len(es)], es) {
		return false
	}
	mt, _, _ := mime.ParseMediaType(ct)
	return mt == es
}

// copyBody copies a response body to w (flush: after every write).
func copyBody(w http.ResponseWriter, body io.Reader, flush bool) error {
	buf := copyBuffers.Get()
	defer copyBuffers.Put(buf)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if flush {
				if err := http.NewResponseController(w).Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
