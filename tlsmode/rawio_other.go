//go:build !linux

package tlsmode

import (
	"io"
	"net"
)

// rawIO is Linux-only (rawio_linux.go): elsewhere it is never set, and
// conns are read and written by net's own Read and Write.
type rawIO struct{}

func rawIOOf(net.Conn) rawIO           { return rawIO{} }
func (rawIO) set() bool                { return false }
func (rawIO) read([]byte) (int, error) { panic("tlsmode: rawIO is never set here") }
func (rawIO) write([]byte) (int, error) {
	panic("tlsmode: rawIO is never set here")
}
func rawTCPOf(c net.Conn) net.Conn { return c }

// RawReader returns c: there is no rawIO here.
func RawReader(c net.Conn) io.Reader { return c }

func rawWriteAll(c net.Conn, p []byte) (int, error) { return c.Write(p) }
