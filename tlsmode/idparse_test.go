package tlsmode

import (
	"testing"

	"github.com/tlsedge/tlsedge/internal/idtest"
	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// idParse is the identity of preset ("map": a header per field).
func idParse(tb testing.TB, preset string) *identity.Headers {
	tb.Helper()
	var id *identity.Headers
	var err error
	if preset == "map" {
		id, err = identity.Parse("", idtest.AllFields)
	} else {
		id, err = identity.Parse(preset, nil)
	}
	if err != nil {
		tb.Fatal(err)
	}
	return id
}
