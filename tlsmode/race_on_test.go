//go:build race

package tlsmode

// raceOn: built with -race, where sync.Pool drops a quarter of what it is
// given back (allocation counts of pooled paths are not 0).
const raceOn = true
