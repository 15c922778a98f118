package tlsmode

// The parts of an HTTP/1.x answer's head that h1Response writes: the status
// line, the fields, the 1xx answers, and OPTIONS * (answered here, as
// net/http does).

import (
	"bufio"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// informational writes a 1xx answer with the handler's header now (103
// Early Hints; 100 Continue after the body was asked for is ours).
func (w *h1Response) informational(code int, fields bool) {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	if w.committed {
		return // the final answer is on its way: no 1xx after it
	}
	if code == http.StatusContinue {
		if w.continued.Load() {
			return
		}
		w.continued.Store(true)
	}
	bw := w.h.bw
	w.statusLine(bw, code)
	if fields {
		h1WriteFields(bw, w.header, h1Exclude1xx)
	}
	_, _ = bw.WriteString("\r\n")
	w.flushErr(bw.Flush())
}

func (w *h1Response) statusLine(bw *bufio.Writer, code int) {
	if w.req.ProtoAtLeast(1, 1) {
		_, _ = bw.WriteString("HTTP/1.1 ")
	} else {
		_, _ = bw.WriteString("HTTP/1.0 ")
	}
	var b [3]byte
	_, _ = bw.Write(strconv.AppendInt(b[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	if text := http.StatusText(code); text != "" {
		_, _ = bw.WriteString(text)
	} else {
		_, _ = bw.WriteString("status code " + strconv.Itoa(code))
	}
	_, _ = bw.WriteString("\r\n")
}

// h1Exclude1xx and h1ExcludeFinal are the fields h1WriteFields leaves out
// of a 1xx head and of a final one (whose framing commit writes itself).
var (
	h1Exclude1xx   = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}
	h1ExcludeFinal = map[string]bool{"Content-Length": true, "Transfer-Encoding": true, "Connection": true}
)

// h1WriteFields writes hdr's fields sorted by name, as net/http's
// Header.WriteSubset: names that are not tokens are dropped (a handler's
// "X\r\nY" must not become two fields), and so are the TrailerPrefix keys
// and those in exclude.
func h1WriteFields(bw *bufio.Writer, hdr http.Header, exclude map[string]bool) {
	var keyBuf [24]string
	keys := keyBuf[:0]
	for k := range hdr {
		if exclude[k] || strings.HasPrefix(k, http.TrailerPrefix) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range hdr[k] {
			_, _ = bw.WriteString(k)
			_, _ = bw.WriteString(": ")
			_, _ = bw.WriteString(headerValue(v))
			_, _ = bw.WriteString("\r\n")
		}
	}
}

// h1OptionsStar answers "OPTIONS *" as net/http's globalOptionsHandler:
// 200 with no body, after reading up to 4 KiB of a request body.
func h1OptionsStar(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Length", "0")
	if r.ContentLength != 0 {
		_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, 4<<10))
	}
}
