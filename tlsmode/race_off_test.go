//go:build !race

package tlsmode

// raceOn: built with -race (see race_on_test.go).
const raceOn = false
