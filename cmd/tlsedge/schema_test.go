package main

import (
	"bytes"
	"os"
	"testing"
)

// `tlsedge schema` prints exactly the checked-in docs/edge.schema.json.
func TestSchemaCmdPrintsCheckedInSchema(t *testing.T) {
	var out bytes.Buffer
	c := schemaCmd()
	c.SetOut(&out)
	c.SetArgs(nil)
	if err := c.Execute(); err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile("../../docs/edge.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Errorf("tlsedge schema printed %d bytes that differ from docs/edge.schema.json (%d bytes)", out.Len(), len(want))
	}
}
