package certs

import (
	"bytes"
	"encoding/pem"
	"fmt"
)

// pemBlocks returns the DER bytes of every PEM block of data, in order, all
// of type want; why is added to the error about a block of another type.
// A malformed block (bad base64, no END line) is an error, never skipped.
func pemBlocks(file string, data []byte, want, why string) ([][]byte, error) {
	var out [][]byte
	rest := data
	for n := 1; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if bytes.Contains(rest, []byte("-----BEGIN")) {
				return nil, fmt.Errorf("%s: PEM block %d is malformed (bad base64 or a missing END line)", file, n)
			}
			return out, nil
		}
		if block.Type != want {
			return nil, fmt.Errorf("%s: PEM block %d is %q, not %s%s", file, n, block.Type, want, why)
		}
		out = append(out, block.Bytes)
	}
}
