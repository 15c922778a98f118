package affinity

import (
	"errors"
	"fmt"
	"strconv"
)

// Mode selects which fields of a connection form its affinity key.
// The zero Mode is None: no affinity, the balance policy decides.
type Mode uint8

const (
	// None: no affinity key; the balance policy picks.
	None Mode = iota
	// SourceIP: the client IP. Same client, same server.
	SourceIP
	// ClassC: the client's /24 (IPv4) or /48 (IPv6) network, so a farm of
	// proxies in one network stays on one server.
	ClassC
	// FiveTuple: source IP and port, destination IP and port, protocol (TCP).
	// Every new connection may land elsewhere, but deterministically, so
	// two balancer instances agree.
	FiveTuple
)

// ErrUnknownMode is returned (wrapped) by [ParseMode] for a name it does not know.
var ErrUnknownMode = errors.New("affinity: unknown affinity mode")

var modeNames = [...]string{
	None:      "none",
	SourceIP:  "source_ip",
	ClassC:    "class_c",
	FiveTuple: "five_tuple",
}

// ParseMode parses the `affinity:` config value. "" means "none".
// Names are matched exactly (lower case, as written in the spec).
func ParseMode(s string) (Mode, error) {
	if s == "" {
		return None, nil
	}
	for m, name := range modeNames {
		if s == name {
			return Mode(m), nil
		}
	}
	return None, fmt.Errorf("%w %q: use none, source_ip, class_c or five_tuple", ErrUnknownMode, s)
}

// String returns the config name of m, or "Mode(N)" for a value out of range.
func (m Mode) String() string {
	if int(m) < len(modeNames) {
		return modeNames[m]
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}
