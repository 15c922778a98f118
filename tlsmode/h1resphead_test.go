package tlsmode

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// respSeeds: answers a server sends, each as the fast path must read it.
var respSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 204 No Content\r\nDate: Sat, 05 Dec 2026 21:00:00 GMT\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nEtag: \"x\"\r\nContent-Length: 12\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
	"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nX-A: 1\r\n\r\nto the end",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nset-cookie: b=2\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n",
	"HTTP/1.1 500 Internal Server Error\r\nPragma: no-cache\r\nContent-Length: 4\r\n\r\nfail",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
	"HTTP/1.1 404\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1  200  spaced reason \r\nX-Obs-Text: caf\xc3\xa9\r\nContent-Length: 1\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nContent-Length: 007\r\n\r\n1234567rest",
	"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 12000\r\n\r\n" + strings.Repeat("x", 12000), // the last read past bufio with EOF
	"HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n" + strings.Repeat("x", 8000),
}

// respDeclined: heads the fast path leaves to http.ReadResponse.
var respDeclined = []string{
	"HTTP/1.1 200 OK\nContent-Length: 2\n\nok",                                       // bare LF
	"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\nContent-Length: 0\r\n\r\n",              // obs-fold
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",      // chunked
	"HTTP/1.1 200 OK\r\nTrailer: X-T\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", // trailer
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",            // two lengths
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",            // two lengths, differing
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",                                // not digits
	"HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",                                     // empty
	"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",                                         // space in a name
	"HTTP/1.1 200 OK\r\nX: a\x01b\r\n\r\n",                                           // control byte
	"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n",                                             // lone CR
	"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",                                            //
	"HTTP/2.0 200 OK\r\n\r\n",                                                        // not HTTP/1.x
	"HTTP/1.1 2000 OK\r\n\r\n",                                                       // status code
	"HTTP/1.1 +20 OK\r\n\r\n",                                                        //
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n",                                       // no end of head
	"HTTP/1.1 200\tOK\r\n\r\n",                                                       //
	"garbage\r\n\r\n",                                                                //
}

// sameResponse reports how a response read with readUpResponse differs
// from http.ReadResponse's of the same bytes (head, body read by read,
// what is left after it), "" when it does not. Each is read twice: from
// a bytes.Reader, and from a reader that returns its last bytes with
// io.EOF (as crypto/tls does when close_notify follows the last record).
func sameResponse(data []byte, method string) (lean bool, diff string) {
	req := &http.Request{Method: method}
	probe := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	if _, err := probe.Peek(1); err == nil {
		lean = leanResponseHead(probe, req) != nil
	}
	for _, src := range []func() io.Reader{
		func() io.Reader { return bytes.NewReader(data) },
		func() io.Reader { return &lastWithEOF{data} },
	} {
		if d := sameResponseFrom(src, req); d != "" {
			return lean, d
		}
	}
	return lean, ""
}

func sameResponseFrom(src func() io.Reader, req *http.Request) string {
	brL := bufio.NewReaderSize(src(), 4096)
	brN := bufio.NewReaderSize(src(), 4096)
	rl, errL := readUpResponse(brL, req)
	rn, errN := http.ReadResponse(brN, req)
	if (errL == nil) != (errN == nil) || (errL != nil && errL.Error() != errN.Error()) {
		return "errors: " + errString(errL) + " | net/http " + errString(errN)
	}
	if errL != nil {
		return ""
	}
	type head struct {
		Status                   string
		StatusCode, Major, Minor int
		Proto                    string
		Header, Trailer          http.Header
		ContentLength            int64
		Close, NoBody            bool
		TransferEncoding         []string
		Request                  *http.Request
	}
	of := func(r *http.Response) head {
		return head{r.Status, r.StatusCode, r.ProtoMajor, r.ProtoMinor, r.Proto, r.Header, r.Trailer,
			r.ContentLength, r.Close, r.Body == http.NoBody, r.TransferEncoding, r.Request}
	}
	if hl, hn := of(rl), of(rn); !reflect.DeepEqual(hl, hn) {
		return fmt.Sprintf("heads differ:\n%+v\nnet/http:\n%+v", hl, hn)
	}
	// Read by read, as copyBody reads (32 KiB), until an error.
	bufL, bufN := make([]byte, 32<<10), make([]byte, 32<<10)
	for i := 0; ; i++ {
		nl, eL := rl.Body.Read(bufL)
		nn, eN := rn.Body.Read(bufN)
		if !bytes.Equal(bufL[:nl], bufN[:nn]) || errString(eL) != errString(eN) {
			return fmt.Sprintf("body read %d differs: %.200q %v | net/http %.200q %v", i, bufL[:nl], eL, bufN[:nn], eN)
		}
		if eL != nil {
			break
		}
	}
	restL, _ := io.ReadAll(brL)
	restN, _ := io.ReadAll(brN)
	if !bytes.Equal(restL, restN) {
		return fmt.Sprintf("left after the body: %.200q | net/http %.200q", restL, restN)
	}
	return ""
}

// lastWithEOF returns its bytes, the last of them with io.EOF.
type lastWithEOF struct{ b []byte }

func (r *lastWithEOF) Read(p []byte) (int, error) {
	n := copy(p, r.b)
	r.b = r.b[n:]
	if len(r.b) == 0 {
		return n, io.EOF
	}
	return n, nil
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// TestLeanResponseHeadTaken: the plain answers take the fast path, and it
// reads them as http.ReadResponse does, for GET and HEAD.
func TestLeanResponseHeadTaken(t *testing.T) {
	for _, method := range []string{"GET", "HEAD"} {
		for _, in := range respSeeds {
			lean, diff := sameResponse([]byte(in), method)
			if !lean {
				t.Errorf("%s %.200q: not read by the fast path", method, in)
			}
			if diff != "" {
				t.Errorf("%s %.200q: %s", method, in, diff)
			}
		}
	}
}

// TestLeanResponseHeadDeclines: anything but a plain head is left to
// http.ReadResponse, whose answer or error readUpResponse then returns.
func TestLeanResponseHeadDeclines(t *testing.T) {
	for _, in := range respDeclined {
		lean, diff := sameResponse([]byte(in), "GET")
		if lean {
			t.Errorf("%q: read by the fast path", in)
		}
		if diff != "" {
			t.Errorf("%q: %s", in, diff)
		}
	}
}

// TestLeanResponseHeadInPieces: a head that comes a byte at a time is not
// whole in the buffer after the first read: http.ReadResponse reads it.
func TestLeanResponseHeadInPieces(t *testing.T) {
	in := respSeeds[0]
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(in)), 4096)
	_, _ = br.Peek(1)
	if leanResponseHead(br, nil) != nil {
		t.Fatal("the fast path read a head it did not hold whole")
	}
	if br.Buffered() != 1 {
		t.Fatalf("the fast path took bytes: %d buffered, want 1", br.Buffered())
	}
	resp, err := readUpResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil || string(body) != "hello" || resp.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("read %q, %v, header %v", body, err, resp.Header)
	}
}

// FuzzLeanResponseHead: whatever the bytes, readUpResponse's answer (or
// error) is http.ReadResponse's: head, body, what is left after it.
func FuzzLeanResponseHead(f *testing.F) {
	for _, in := range append(append([]string{}, respSeeds...), respDeclined...) {
		f.Add([]byte(in), false)
		f.Add([]byte(in), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := "GET"
		if head {
			method = "HEAD"
		}
		if _, diff := sameResponse(data, method); diff != "" {
			t.Fatalf("%.200q (%s): %s", data, method, diff)
		}
	})
}
