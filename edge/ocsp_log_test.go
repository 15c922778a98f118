package edge

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/certs"
)

// lockedBuffer is a bytes.Buffer safe for the logger's writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// A responder that is down lets every handshake of an ocsp: soft route
// through with a warning: at most log.failure_burst of them are written
// each failure_interval (20 by default), not one per handshake.
func TestOCSPSoftFailLogBounded(t *testing.T) {
	var out lockedBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	e := New(ctx, zerolog.New(&out))
	o := e.ocspChecker(certs.OCSPSoft)
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "device-1"}}
	for range 100 {
		o.OnSoftFail(leaf, errors.New("responder unreachable"))
	}
	if n := strings.Count(out.String(), "certificate let through without a good OCSP answer"); n != DefaultFailureBurst {
		t.Errorf("%d soft-fail lines for 100 handshakes; want %d (log.failure_burst)\n%s", n, DefaultFailureBurst, out.String())
	}
}
