package edge

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// Session ticket keys (RFC 5077; RFC 8446 §4.6.1). A ticket is a session's
// secrets encrypted under a key only tlsedge holds: whoever steals the key
// can decrypt every session resumed with, or recorded under, it. So keys
// are rotated on a timer and dropped on a schedule, the newest key
// encrypting and the previous ones only decrypting, and routes share keys
// only when a session of one may resume on the other: when their TLS policy
// (who may connect, and how) is the same.
const (
	// maxTicketKeys and maxTicketAge bound how long a ticket stays
	// usable: at most 24 keys' worth of rotations, never more than a day.
	maxTicketKeys = 24
	maxTicketAge  = 24 * time.Hour
	// minTicketRotation is the shortest rotation period used: a shorter
	// session_ticket_rotation would only spin.
	minTicketRotation = time.Second
)

// ticketKey is one session ticket key and when it was made.
type ticketKey struct {
	key     [32]byte
	created time.Time
}

func newTicketKey(now time.Time) ticketKey {
	k := ticketKey{created: now}
	_, _ = rand.Read(k.key[:]) // never fails (crypto/rand crashes the program instead)
	return k
}

// ticketRing is the key ring of one TLS policy. keys[0] encrypts new
// tickets, every key decrypts; each rotation puts a new key first and drops
// keys older than maxTicketAge and beyond maxTicketKeys. Every tls.Config of
// the policy in force gets the ring's keys whenever they change.
type ticketRing struct {
	policy string
	period time.Duration // the rotation period: at most maxTicketAge
	log    zerolog.Logger

	mu      sync.Mutex
	keys    []ticketKey        // newest first, never empty
	configs []*tls.Config      // the configs in force with this policy
	cancel  context.CancelFunc // stops run; nil until the ring is put in force
	done    chan struct{}      // closed when run has returned
}

func newTicketRing(policy string, period time.Duration, now time.Time, log zerolog.Logger) *ticketRing {
	// A key must be replaced before it is too old to keep.
	period = min(period, maxTicketAge)
	return &ticketRing{policy: policy, period: period, log: log, keys: []ticketKey{newTicketKey(now)}}
}

// rotate puts a new key first when the newest is a period old, then drops
// the keys that are maxTicketAge old or beyond maxTicketKeys (never the
// newest), and hands the keys to every config of the ring.
func (r *ticketRing) rotate(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Sub(r.keys[0].created) >= r.period {
		r.keys = slices.Insert(r.keys, 0, newTicketKey(now))
	}
	keep := 1
	for keep < len(r.keys) && keep < maxTicketKeys && now.Sub(r.keys[keep].created) < maxTicketAge {
		keep++
	}
	clear(r.keys[keep:]) // no copy of a dropped key stays in the array
	r.keys = r.keys[:keep]
	for _, tc := range r.configs {
		r.installLocked(tc)
	}
}

// wait is how long after now the ring must rotate next: when the newest key
// is a period old, or the oldest maxTicketAge old, whichever comes first.
func (r *ticketRing) wait(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	next := r.keys[0].created.Add(r.period)
	if n := len(r.keys); n > 1 {
		if exp := r.keys[n-1].created.Add(maxTicketAge); exp.Before(next) {
			next = exp
		}
	}
	return max(next.Sub(now), 0)
}

// install gives tc the ring's keys (a config being built, not yet in force).
func (r *ticketRing) install(tc *tls.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.installLocked(tc)
}

func (r *ticketRing) installLocked(tc *tls.Config) {
	keys := make([][32]byte, len(r.keys))
	for i, k := range r.keys {
		keys[i] = k.key
	}
	tc.SetSessionTicketKeys(keys)
}

// setConfigs makes configs the ring's configs in force and gives them the
// current keys (a rotation may have come between build and commit).
func (r *ticketRing) setConfigs(configs []*tls.Config) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.configs = configs
	for _, tc := range configs {
		r.installLocked(tc)
	}
}

// run rotates the ring on time until ctx is done. It owns its timer; a
// panic in a rotation is logged with its stack and the rotations go on, a
// period later (house rule 13).
func (r *ticketRing) run(ctx context.Context, now func() time.Time) {
	defer close(r.done)
	t := time.NewTimer(r.wait(now()))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := r.period
		if r.tick(now) {
			d = r.wait(now())
		}
		t.Reset(d)
	}
}

// tick rotates once; false when the rotation panicked.
func (r *ticketRing) tick(now func() time.Time) (ok bool) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error().Str("policy", r.short()).Interface("panic", p).Bytes("stack", debug.Stack()).
				Msg("session ticket key rotation crashed")
			ok = false
		}
	}()
	r.rotate(now())
	if e := r.log.Debug(); e.Enabled() {
		r.mu.Lock()
		n := len(r.keys)
		r.mu.Unlock()
		e.Str("policy", r.short()).Int("keys", n).Msg("session ticket key rotated")
	}
	return true
}

// short names the ring's policy in logs.
func (r *ticketRing) short() string { return r.policy[:min(12, len(r.policy))] }

// ticketRings are the key rings of the Edge, by policy. They live across
// reloads: a route whose policy a reload left unchanged keeps its keys, so
// its clients resume right after the reload. A ring whose policy no route
// has any more is stopped and forgotten.
type ticketRings struct {
	ctx context.Context
	log zerolog.Logger
	now func() time.Time // time.Now; tests set a clock

	mu    sync.Mutex
	rings map[string]*ticketRing // the rings in force, by policy
}

func newTicketRings(ctx context.Context, log zerolog.Logger) *ticketRings {
	return &ticketRings{ctx: ctx, log: log, now: time.Now, rings: map[string]*ticketRing{}}
}

// ticketStage collects the rings and configs of one config being built:
// commit puts them in force; a build that is dropped changes nothing (a
// new ring is not started before commit).
type ticketStage struct {
	k       *ticketRings
	rings   map[string]*ticketRing
	configs map[*ticketRing][]*tls.Config
}

func (k *ticketRings) stage() *ticketStage {
	return &ticketStage{k: k, rings: map[string]*ticketRing{}, configs: map[*ticketRing][]*tls.Config{}}
}

// attach gives tc the keys of policy's ring: the ring in force for that
// policy, or a new one rotated every period (0 = DefaultTicketRotation).
func (s *ticketStage) attach(policy string, period time.Duration, tc *tls.Config) {
	r := s.rings[policy]
	if r == nil {
		s.k.mu.Lock()
		r = s.k.rings[policy]
		s.k.mu.Unlock()
		if r == nil {
			if period <= 0 {
				period = DefaultTicketRotation
			}
			r = newTicketRing(policy, max(period, minTicketRotation), s.k.now(), s.k.log)
		}
		s.rings[policy] = r
	}
	s.configs[r] = append(s.configs[r], tc)
	r.install(tc)
}

// commit puts the rings of s in force: their configs get the current keys,
// new rings start rotating, and rings no config uses any more stop.
func (k *ticketRings) commit(s *ticketStage) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range s.rings {
		r.setConfigs(s.configs[r])
		if r.cancel == nil {
			ctx, cancel := context.WithCancel(k.ctx)
			r.cancel, r.done = cancel, make(chan struct{})
			go r.run(ctx, k.now)
		}
	}
	for policy, r := range k.rings {
		if s.rings[policy] != r {
			r.cancel()
		}
	}
	k.rings = s.rings
}

// stop stops every ring (Shutdown).
func (k *ticketRings) stop() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, r := range k.rings {
		r.cancel()
	}
	k.rings = map[string]*ticketRing{}
}

// sessionNamePrefix marks the SessionState.Extra entry that binds a ticket
// to the server name it was issued for.
const sessionNamePrefix = "tlsedge/sni:"

// bindSessions makes tc's tickets (encrypted with its ring's keys) carry the
// server name the session was made for, and refuses to resume one under
// another name: RFC 6066 §3, a server "MUST NOT accept the request to resume
// the session if the server_name extension contains a different name".
// Routes of one policy share keys; a session still resumes only on the name
// (and so the route) it was made on.
func bindSessions(tc *tls.Config) {
	tc.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(slices.DeleteFunc(ss.Extra, isSessionName), sessionName(cs.ServerName))
		return tc.EncryptTicket(cs, ss)
	}
	tc.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := tc.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return nil, err // nil, nil: not ours, or under a dropped key: a full handshake
		}
		want := sessionName(cs.ServerName)
		if !slices.ContainsFunc(ss.Extra, func(b []byte) bool { return bytes.Equal(b, want) }) {
			return nil, nil // made for another name: a full handshake
		}
		return ss, nil
	}
}

func sessionName(serverName string) []byte {
	return []byte(sessionNamePrefix + strings.ToLower(strings.TrimSuffix(serverName, ".")))
}

func isSessionName(b []byte) bool { return bytes.HasPrefix(b, []byte(sessionNamePrefix)) }
