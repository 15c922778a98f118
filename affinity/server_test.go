package affinity

import (
	"testing"
)

func TestNewServer(t *testing.T) {
	s := NewServer("10.0.0.1:443", 3)
	if got, want := s.Address, "10.0.0.1:443"; got != want {
		t.Errorf("Address: got %q; want %q", got, want)
	}
	if got, want := s.String(), "10.0.0.1:443"; got != want {
		t.Errorf("String: got %q; want %q", got, want)
	}
	if got, want := s.Weight(), 3; got != want {
		t.Errorf("Weight: got %v; want %v", got, want)
	}
	if !s.Healthy() || s.Draining() || !s.Available() || s.Active() != 0 {
		t.Errorf("got healthy %v, draining %v, available %v, active %d; want true, false, true, 0",
			s.Healthy(), s.Draining(), s.Available(), s.Active())
	}
	if got, want := s.hash, addressHash("10.0.0.1:443"); got != want {
		t.Errorf("hash: got %#x; want %#x", got, want)
	}
}

func TestSetWeight(t *testing.T) {
	tests := []struct {
		in, want int
	}{
		{0, 0}, {1, 1}, {250, 250}, {-5, 0}, {MaxWeight, MaxWeight}, {MaxWeight + 1, MaxWeight},
	}
	for _, tt := range tests {
		s := NewServer("a:1", 1)
		s.SetWeight(tt.in)
		if got := s.Weight(); got != tt.want {
			t.Errorf("SetWeight(%d): got %d; want %d", tt.in, got, tt.want)
		}
		if got := NewServer("a:1", tt.in).Weight(); got != tt.want {
			t.Errorf("NewServer(_, %d): got weight %d; want %d", tt.in, got, tt.want)
		}
	}
}

func TestAvailable(t *testing.T) {
	tests := []struct {
		name     string
		healthy  bool
		draining bool
		weight   int
		want     bool
	}{
		{"healthy", true, false, 1, true},
		{"unhealthy", false, false, 1, false},
		{"draining", true, true, 1, false},
		{"weight 0", true, false, 0, false},
		{"unhealthy draining", false, true, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewServer("a:1", tt.weight)
			s.SetHealthy(tt.healthy)
			s.SetDraining(tt.draining)
			if got := s.Available(); got != tt.want {
				t.Errorf("got %v; want %v", got, tt.want)
			}
		})
	}
	var zero Server
	if zero.Available() {
		t.Errorf("zero Server Available: got true; want false")
	}
}

func TestAcquireRelease(t *testing.T) {
	s := NewServer("a:1", 1)
	s.Acquire()
	s.Acquire()
	s.Release()
	if got, want := s.Active(), int64(1); got != want {
		t.Errorf("got %d; want %d", got, want)
	}
	s.Release()
	s.Release() // unpaired: Active goes negative, but policies treat it as 0
	if got, want := s.load(), int64(0); got != want {
		t.Errorf("load: got %d; want %d", got, want)
	}
}

// HealthChanged's channel is closed by a change of the verdict, and only
// by a change: the same verdict again leaves it open.
func TestHealthChanged(t *testing.T) {
	s := NewServer("10.0.0.1:1", 1)
	ch := s.HealthChanged()
	s.SetHealthy(true) // no change
	select {
	case <-ch:
		t.Fatal("closed by the same verdict")
	default:
	}
	s.SetHealthy(false)
	select {
	case <-ch:
	default:
		t.Fatal("not closed by a change")
	}
	if s.HealthChanged() == ch {
		t.Error("the closed channel handed out again")
	}
}
