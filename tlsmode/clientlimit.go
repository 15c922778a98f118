package tlsmode

// Per-client limits of a route (routes[].client_limits): open connections
// and requests a second per client identity, across all of the client's
// connections, in bounded memory.

import (
	"container/list"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"math"
	"sync"
	"time"

	"github.com/tlsedge/tlsedge/tlsmode/identity"
)

// ClientLimitSettings are the limits of one route; zero = no limit of that
// kind.
type ClientLimitSettings struct {
	Connections int     // open connections per client
	Rate        float64 // requests a second per client (token bucket)
	Burst       int     // the bucket's size; 0 = max(1, Rate)
	Key         string  // sha256 (default) | uri | dns | email | cn | subject
}

// clientLimitMax bounds the clients remembered for their request rate; a
// client with open connections is always remembered (at most one entry per
// open connection).
const clientLimitMax = 100_000

// ClientLimiter counts per client identity. Safe for concurrent use.
type ClientLimiter struct {
	mu  sync.Mutex
	set ClientLimitSettings
	m   map[string]*list.Element // of *clientEntry
	lru *list.List               // idle entries (no open connection), least recent at the front
	now func() time.Time
}

type clientEntry struct {
	key    string
	open   int
	tokens float64
	last   time.Time
	idle   bool // in lru
}

// NewClientLimiter makes a limiter with settings s.
func NewClientLimiter(s ClientLimitSettings) *ClientLimiter {
	return &ClientLimiter{set: s, m: map[string]*list.Element{}, lru: list.New(), now: time.Now}
}

// Set replaces the settings (on reload); the counts go on.
func (l *ClientLimiter) Set(s ClientLimitSettings) {
	l.mu.Lock()
	l.set = s
	l.mu.Unlock()
}

// Settings are the limiter's settings.
func (l *ClientLimiter) Settings() ClientLimitSettings {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.set
}

// ClientKey is the identity leaf is counted by, per the Key setting: the
// field's first value, or the certificate's SHA-256 when it has none.
func (l *ClientLimiter) ClientKey(leaf *x509.Certificate) string {
	l.mu.Lock()
	field := l.set.Key
	l.mu.Unlock()
	v := ""
	switch field {
	case "uri":
		if len(leaf.URIs) > 0 {
			v = leaf.URIs[0].String()
		}
	case "dns":
		if len(leaf.DNSNames) > 0 {
			v = leaf.DNSNames[0]
		}
	case "email":
		if len(leaf.EmailAddresses) > 0 {
			v = leaf.EmailAddresses[0]
		}
	case "cn":
		v = leaf.Subject.CommonName
	case "subject":
		v = identity.DN(leaf.RawSubject)
	}
	if v != "" {
		return field + ":" + v
	}
	sum := sha256.Sum256(leaf.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// entryLocked finds or makes key's entry, evicting the least recently used
// idle entries beyond clientLimitMax.
func (l *ClientLimiter) entryLocked(key string) *clientEntry {
	if el := l.m[key]; el != nil {
		e := el.Value.(*clientEntry)
		if e.idle {
			l.lru.MoveToBack(el)
		}
		return e
	}
	for len(l.m) >= clientLimitMax && l.lru.Len() > 0 {
		old := l.lru.Remove(l.lru.Front()).(*clientEntry)
		delete(l.m, old.key)
	}
	e := &clientEntry{key: key, tokens: l.burstLocked(), last: l.now(), idle: true}
	l.m[key] = l.lru.PushBack(e)
	return e
}

func (l *ClientLimiter) burstLocked() float64 {
	if l.set.Burst > 0 {
		return float64(l.set.Burst)
	}
	return math.Max(1, l.set.Rate)
}

// Open counts a new connection of key. It returns false when the client
// already has Connections open (nothing counted), else a release func to
// call once when the connection ends.
func (l *ClientLimiter) Open(key string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entryLocked(key)
	if l.set.Connections > 0 && e.open >= l.set.Connections {
		return nil, false
	}
	e.open++
	if e.idle { // busy entries are never evicted: their count must stay
		l.lru.Remove(l.m[key])
		l.m[key] = &list.Element{Value: e}
		e.idle = false
	}
	var once sync.Once
	return func() { once.Do(func() { l.close(e) }) }, true
}

func (l *ClientLimiter) close(e *clientEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.open--; e.open == 0 && !e.idle && l.m[e.key] != nil {
		l.m[e.key] = l.lru.PushBack(e)
		e.idle = true
	}
}

// Full reports whether key already has its Connections open; it counts
// nothing (a handshake checks it before the client has proven it holds the
// certificate's key: only Open after the handshake takes a slot).
func (l *ClientLimiter) Full(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set.Connections <= 0 {
		return false
	}
	el := l.m[key]
	return el != nil && el.Value.(*clientEntry).open >= l.set.Connections
}

// Request takes a token of key's bucket. When there is none it returns
// false and how long until there is one.
func (l *ClientLimiter) Request(key string) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.set.Rate <= 0 {
		return true, 0
	}
	e := l.entryLocked(key)
	now := l.now()
	if d := now.Sub(e.last); d > 0 {
		e.tokens = math.Min(l.burstLocked(), e.tokens+d.Seconds()*l.set.Rate)
	}
	e.last = now
	if e.tokens >= 1 {
		e.tokens--
		return true, 0
	}
	return false, time.Duration((1 - e.tokens) / l.set.Rate * float64(time.Second))
}

// Len is the number of clients remembered.
func (l *ClientLimiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
