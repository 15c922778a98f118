package tlsmode

import (
	"crypto/tls"
	"testing"

	"github.com/tlsedge/tlsedge/internal/idtest"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// The test PKI and its helpers (internal/idtest), under this package's
// test names.
type (
	idPKI = idtest.PKI
	idTLS = idtest.TLS
)

var idStates = idtest.States

func idMakePKI(tb testing.TB) *idPKI                      { return idtest.MakePKI(tb) }
func idState(p *idPKI, state string) *tls.ConnectionState { return idtest.State(p, state) }
func idNewTLS(t *testing.T) *idTLS                        { return idtest.NewTLS(t) }
func idGolden(t *testing.T, name, got string, write bool) {
	t.Helper()
	idtest.Golden(t, name, got, write)
}
func idHandshake(t *testing.T, scfg, ccfg *tls.Config) tls.ConnectionState {
	t.Helper()
	return idtest.Handshake(t, scfg, ccfg)
}

var idAllFields = map[string]string{
	"X-Client-Subject": "subject", "X-Client-Issuer": "issuer", "X-Client-Serial": "serial",
	"X-Client-Sha256": "sha256", "X-Client-Cert": "cert", "X-Client-Chain": "chain",
	"X-Client-Uri": "uri", "X-Client-Dns": "dns", "X-Client-Email": "email",
	"X-Client-Not-Before": "not_before", "X-Client-Not-After": "not_after", "X-Client-Verify": "verify",
}

// idParse is the identity of preset ("map": a header per field).
func idParse(tb testing.TB, preset string) *identity.Headers {
	tb.Helper()
	var id *identity.Headers
	var err error
	if preset == "map" {
		id, err = identity.Parse("", idAllFields)
	} else {
		id, err = identity.Parse(preset, nil)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
