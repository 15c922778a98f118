package edge

import (
	"fmt"
	"strings"
)

// Problem is one thing wrong with a config file: where, and why and how to fix it.
type Problem struct {
	File string // the config file, as given by the user
	Path string // the key path as written in the file: listeners[0].routes[1].backend
	Msg  string
}

func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteString(": ")
	}
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems collects every problem of one config; it is the error that
// LoadFile returns, one problem a line.
type Problems struct {
	File string
	List []Problem
	// Warnings are problems that do not refuse the config: on a reload,
	// an expired certificate (see Expired).
	Warnings []Problem
	// reload: the config is read for a reload of a running one.
	reload bool
}

// Expired records a certificate that has expired: a problem at start and
// for validate; on a reload a warning only, so that one certificate left to
// expire does not hold back every other change (a new CRL above all) while
// the running config serves it anyway.
func (ps *Problems) Expired(path, format string, args ...any) {
	if !ps.reload {
		ps.Add(path, format, args...)
		return
	}
	ps.Warnings = append(ps.Warnings, Problem{File: ps.File, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// Add records a problem at path.
// The same problem found twice (a backend shared by two routes) is listed once.
func (ps *Problems) Add(path, format string, args ...any) {
	p := Problem{File: ps.File, Path: path, Msg: fmt.Sprintf(format, args...)}
	for _, q := range ps.List {
		if q == p {
			return
		}
	}
	ps.List = append(ps.List, p)
}

// Err returns ps as an error, or nil when there is no problem.
func (ps *Problems) Err() error {
	if len(ps.List) == 0 {
		return nil
	}
	return ps
}

func (ps *Problems) Error() string {
	lines := make([]string, len(ps.List))
	for i, p := range ps.List {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
