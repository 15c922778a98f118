//go:build !linux

package tlsmode

import (
	"io"
	"net"
)

// Raw reads and writes are Linux-only (rawio_linux.go): elsewhere conns
// are read and written by net's own Read and Write.

func rawTCPOf(c net.Conn) net.Conn { return c }

// RawReader returns c: there is no rawIO here.
func RawReader(c net.Conn) io.Reader { return c }

func rawWriteAll(c net.Conn, p []byte) (int, error) { return c.Write(p) }

// ReadNow: the read that never waits is Linux's; 0, so the ClientHello is
// read with ReadHello's exact reads.
func ReadNow(net.Conn, []byte) int { return 0 }

// writeNow: writes that never wait are Linux's; not ok, nothing written.
func writeNow(net.Conn, []byte) (int, bool, error) { return 0, false, nil }
