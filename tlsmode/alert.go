package tlsmode

import (
	"net"
	"time"
)

// TLS alert descriptions sent before routing (RFC 8446 §6.2).
const (
	AlertDecodeError      uint8 = 50
	AlertInternalError    uint8 = 80
	AlertUnrecognizedName uint8 = 112
	alertLevelFatal       uint8 = 2
	recordTypeAlert       uint8 = 21
	alertWriteTimeout           = time.Second
)

// WriteAlert sends one fatal TLS alert record under a short write deadline so
// a client that does not read cannot stall us. The record version is TLS 1.2
// (0x0303), which every TLS 1.2 and 1.3 client accepts before the handshake.
// The caller still owns and closes c.
func WriteAlert(c net.Conn, desc uint8) error {
	_ = c.SetWriteDeadline(time.Now().Add(alertWriteTimeout))
	_, err := c.Write([]byte{recordTypeAlert, 3, 3, 0, 2, alertLevelFatal, desc})
	return err
}
