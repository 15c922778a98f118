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

// reqSeeds: request heads a client sends, each as the fast path must read it.
var reqSeeds = []string{
	"GET / HTTP/1.1\r\nHost: api.example\r\n\r\n",
	"GET /v1/items?id=7&x=%20y HTTP/1.1\r\nHost: api.example\r\nUser-Agent: curl/8\r\nAccept: */*\r\n\r\nGET /next HTTP/1.1\r\n",
	"HEAD /a HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 10.0.0.1\r\nX-Forwarded-For: 10.0.0.2\r\n\r\n",
	"GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
	"GET / HTTP/1.0\r\n\r\n",
	"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
	"DELETE /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
	"GET /c HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\nX-Pad: \t v \t\r\nX-Empty:\r\n\r\n",
	"OPTIONS /o HTTP/1.1\r\nHost: a:8443\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
	"GET //double/slash HTTP/1.1\r\nHost: a\r\n\r\n",
}

// reqDeclined: heads the fast path leaves to http.ReadRequest.
var reqDeclined = []string{
	"POST /p HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nok",                 // a body
	"POST /p HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", // chunked
	"GET / HTTP/1.1\r\nHost: a\r\nTrailer: X\r\n\r\n",                            // Trailer
	"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",                               // two Hosts
	"GET http://a/x HTTP/1.1\r\nHost: a\r\n\r\n",                                 // absolute form
	"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",                              // authority form
	"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",                                      // asterisk form
	"GET / HTTP/1.1\nHost: a\n\n",                                                // bare LF
	"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",                               // obs-fold
	"GET  / HTTP/1.1\r\nHost: a\r\n\r\n",                                         // two spaces
	"GET / HTTP/1.1 \r\nHost: a\r\n\r\n",                                         //
	"GET / HTTP/2.0\r\nHost: a\r\n\r\n",                                          //
	"G\x01T / HTTP/1.1\r\nHost: a\r\n\r\n",                                       //
	"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n",                                      //
	"GET /%zz HTTP/1.1\r\nHost: a\r\n\r\n",                                       // a bad escape: url's error
	"GET / HTTP/1.1\r\nBad Name: a\r\n\r\n",                                      //
	"GET / HTTP/1.1\r\nHost: a\r\n",                                              // no end of head
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",                                           //
}

// sameRequest reports how a request read with readRequestHead differs from
// http.ReadRequest's of the same bytes (the request, its body, what is
// left after it), "" when it does not.
func sameRequest(data []byte) (lean bool, diff string) {
	brL := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	brN := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	probe := bufio.NewReaderSize(bytes.NewReader(data), 4096)
	if _, err := probe.Peek(1); err == nil {
		lean = leanRequestHead(probe) != nil
	}
	rl, errL := readRequestHead(brL)
	rn, errN := http.ReadRequest(brN)
	if (errL == nil) != (errN == nil) || (errL != nil && errL.Error() != errN.Error()) {
		return lean, "errors: " + errString(errL) + " | net/http " + errString(errN)
	}
	if errL != nil {
		return lean, ""
	}
	bl, eL := io.ReadAll(rl.Body)
	bn, eN := io.ReadAll(rn.Body)
	if !bytes.Equal(bl, bn) || errString(eL) != errString(eN) {
		return lean, fmt.Sprintf("bodies differ: %q %v | net/http %q %v", bl, eL, bn, eN)
	}
	bodyL, bodyN := rl.Body == http.NoBody, rn.Body == http.NoBody
	rl.Body, rn.Body = nil, nil
	if bodyL != bodyN || !reflect.DeepEqual(*rl, *rn) {
		return lean, fmt.Sprintf("requests differ:\n%+v (NoBody %v)\nnet/http:\n%+v (NoBody %v)", *rl, bodyL, *rn, bodyN)
	}
	restL, _ := io.ReadAll(brL)
	restN, _ := io.ReadAll(brN)
	if !bytes.Equal(restL, restN) {
		return lean, fmt.Sprintf("left after the body: %.200q | net/http %.200q", restL, restN)
	}
	return lean, ""
}

// TestLeanRequestHeadTaken: plain heads with no body take the fast path,
// and it reads them as http.ReadRequest does.
func TestLeanRequestHeadTaken(t *testing.T) {
	for _, in := range reqSeeds {
		lean, diff := sameRequest([]byte(in))
		if !lean {
			t.Errorf("%q: not read by the fast path", in)
		}
		if diff != "" {
			t.Errorf("%q: %s", in, diff)
		}
	}
}

// TestLeanRequestHeadDeclines: anything else is left to http.ReadRequest,
// whose request or error readRequestHead then returns.
func TestLeanRequestHeadDeclines(t *testing.T) {
	for _, in := range reqDeclined {
		lean, diff := sameRequest([]byte(in))
		if lean {
			t.Errorf("%q: read by the fast path", in)
		}
		if diff != "" {
			t.Errorf("%q: %s", in, diff)
		}
	}
}

// TestLeanRequestHeadInPieces: a head not whole in the buffer after the
// first read is http.ReadRequest's.
func TestLeanRequestHeadInPieces(t *testing.T) {
	br := bufio.NewReaderSize(iotest.OneByteReader(strings.NewReader(reqSeeds[1])), 4096)
	_, _ = br.Peek(1)
	if leanRequestHead(br) != nil || br.Buffered() != 1 {
		t.Fatalf("the fast path read a head it did not hold whole (%d buffered)", br.Buffered())
	}
	req, err := readRequestHead(br)
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.RawQuery != "id=7&x=%20y" || req.Host != "api.example" || req.Header.Get("Accept") != "*/*" {
		t.Fatalf("read %+v", req)
	}
}

// FuzzLeanRequestHead: whatever the bytes, readRequestHead's request (or
// error) is http.ReadRequest's.
func FuzzLeanRequestHead(f *testing.F) {
	for _, in := range append(append([]string{}, reqSeeds...), reqDeclined...) {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, diff := sameRequest(data); diff != "" {
			t.Fatalf("%q: %s", data, diff)
		}
	})
}
