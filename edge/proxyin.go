package edge

import (
	"bufio"
	"bytes"
	"errors"
	"io"

	proxyproto "github.com/pires/go-proxyproto"
)

// proxyReadBuffer is the read buffer of readProxyHeader: the most it reads
// past a PROXY header (or, with none, before the ClientHello parser).
const proxyReadBuffer = 256

// readProxyHeader reads the PROXY header a trusted peer may send first on
// src (go-proxyproto: v1 or v2, v2 at most proxyproto.MaxV2HeaderSize bytes
// after its 16-byte preamble).
//
// With a header it returns the header and rest, the bytes it read past the
// header; with none, a nil header, rest and an error that is
// proxyproto.ErrNoProxyProtocol (nothing consumed: rest is all it read).
// The stream to read the ClientHello from is rest followed by src. Any
// other error is a bad header (rest nil): the connection must be refused.
func readProxyHeader(src io.Reader) (*proxyproto.Header, *bytes.Reader, error) {
	br := bufio.NewReaderSize(src, proxyReadBuffer)
	h, err := proxyproto.Read(br)
	if err != nil && !errors.Is(err, proxyproto.ErrNoProxyProtocol) {
		return nil, nil, err
	}
	buffered, _ := br.Peek(br.Buffered())
	return h, bytes.NewReader(bytes.Clone(buffered)), err
}
