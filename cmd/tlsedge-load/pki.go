package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/tlsedge/tlsedge/certs"
)

// writePKI writes a throwaway CA and a server and a client certificate into
// dir: ca.pem, server.pem, server-key.pem, client.pem, client-key.pem. The
// server certificate is for name (default "echo.tlsedge.test"), localhost
// and 127.0.0.1. All are valid for a day.
func writePKI(dir, name string) error {
	if name == "" {
		name = "echo.tlsedge.test"
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	ca, err := certs.NewAuthority("tlsedge-load CA")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "ca.pem"), ca.PEM, 0o644); err != nil {
		return err
	}
	srv, err := ca.Issue(certs.Leaf{
		CommonName: name, DNSNames: []string{name, "localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true,
	})
	if err != nil {
		return err
	}
	cli, err := ca.Issue(certs.Leaf{CommonName: "tlsedge-load client", Client: true})
	if err != nil {
		return err
	}
	if _, _, err := srv.WriteFiles(dir, "server"); err != nil {
		return err
	}
	if _, _, err := cli.WriteFiles(dir, "client"); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "tlsedge-load: PKI for %s in %s\n", name, dir)
	return nil
}
