package tlsmode

import "testing"

// A body's EOF that the transport's goroutine reaches after the handler
// returned (and the request's background read was aborted) arms nothing:
// its read would race the wait for the next request, or take its first
// byte. The next request's own arming still works.
func TestBackgroundReadLateArmRefused(t *testing.T) {
	h := &h1Conn{}
	w1 := &h1Response{cancel: func() {}}
	h.beginRequest(w1, false)
	h.startBackgroundRead(w1)
	if !h.bgArmed {
		t.Fatal("the request in flight could not arm its background read")
	}
	h.abortBackgroundRead()
	h.startBackgroundRead(w1) // late: w1 is over
	if h.bgArmed || h.bgCancel != nil {
		t.Fatalf("a request that is over armed the background read (armed %v, cancel set %v)", h.bgArmed, h.bgCancel != nil)
	}
	w2 := &h1Response{cancel: func() {}}
	h.beginRequest(w2, false)
	h.startBackgroundRead(w1)
	if h.bgArmed {
		t.Fatal("an earlier request armed the next one's background read")
	}
	h.startBackgroundRead(w2)
	if !h.bgArmed {
		t.Fatal("the next request could not arm its background read")
	}
	h.abortBackgroundRead()
}
