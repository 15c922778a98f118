package tlsmode

import (
	"fmt"
	"testing"
	"time"
)

func TestClientLimiterConnections(t *testing.T) {
	l := NewClientLimiter(ClientLimitSettings{Connections: 3})
	var rel []func()
	for i := range 3 {
		r, ok := l.Open("a")
		if !ok {
			t.Fatalf("connection %d of a refused", i+1)
		}
		rel = append(rel, r)
	}
	if _, ok := l.Open("a"); ok {
		t.Fatal("a 4th connection of a admitted")
	}
	if _, ok := l.Open("b"); !ok {
		t.Fatal("another client refused while a is at its limit")
	}
	rel[0]()
	rel[0]() // a second call releases nothing more
	if _, ok := l.Open("a"); !ok {
		t.Fatal("after one of a's connections ended, a new one was refused")
	}
	if _, ok := l.Open("a"); ok {
		t.Fatal("a double release freed two slots")
	}
}

func TestClientLimiterRate(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := NewClientLimiter(ClientLimitSettings{Rate: 10, Burst: 5})
	l.now = func() time.Time { return now }
	for i := range 5 {
		if ok, _ := l.Request("a"); !ok {
			t.Fatalf("request %d of the burst refused", i+1)
		}
	}
	ok, wait := l.Request("a")
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("6th request at once: ok %v, retry after %v; want refused, 100ms", ok, wait)
	}
	if ok, _ := l.Request("b"); !ok {
		t.Fatal("another client refused")
	}
	now = now.Add(250 * time.Millisecond) // 2.5 tokens
	for i := range 2 {
		if ok, _ := l.Request("a"); !ok {
			t.Fatalf("request %d after 250ms refused", i+1)
		}
	}
	if ok, _ := l.Request("a"); ok {
		t.Fatal("a third request after 250ms admitted (2.5 tokens)")
	}
}

// Memory is bounded: idle clients beyond the cap are forgotten, least
// recently used first; a client with an open connection never is.
func TestClientLimiterBounded(t *testing.T) {
	l := NewClientLimiter(ClientLimitSettings{Connections: 1, Rate: 1})
	if _, ok := l.Open("busy"); !ok {
		t.Fatal("busy refused")
	}
	for i := range clientLimitMax + 500 {
		l.Request(fmt.Sprint("idle-", i))
	}
	if n := l.Len(); n > clientLimitMax {
		t.Fatalf("%d clients remembered; want at most %d", n, clientLimitMax)
	}
	if _, ok := l.Open("busy"); ok {
		t.Fatal("the busy client's count was evicted: a second connection admitted")
	}
}

// Full only looks: a handshake that presents a certificate (which anyone
// may have a copy of) and stalls before proving the key takes no slot.
func TestClientLimiterFullTakesNothing(t *testing.T) {
	l := NewClientLimiter(ClientLimitSettings{Connections: 1})
	for range 5 {
		if l.Full("victim") {
			t.Fatal("Full before any connection")
		}
	}
	if _, ok := l.Open("victim"); !ok {
		t.Fatal("the owner's first connection refused after five checks")
	}
	if !l.Full("victim") {
		t.Fatal("Full false with the one allowed connection open")
	}
}
