package tlsmode

import "sync/atomic"

// rlTable maps a loop's slots (an event's data is slot<<1 | side) to its
// streams. The loop looks a stream up at every event with two atomic loads
// and no lock; the goroutine that starts a stream takes a slot and stores
// the stream in it (attach), and the loop clears the slot when the stream
// closes, both under the loop's mu. A slot cleared in a batch of events is
// given out again only after that batch (release): an event of the batch
// for the closed stream finds no stream, never a new one.
type rlTable struct {
	chunks [rlMaxChunks]atomic.Pointer[rlChunk]
	made   int32   // slots made so far (under mu)
	free   []int32 // slots to give out (under mu)
	later  []int32 // slots cleared in this batch (under mu), free after it
}

type rlChunk [1 << rlChunkBits]atomic.Pointer[rlConn]

const (
	rlChunkBits = 10
	rlMaxChunks = 1 << 11 // 2M streams a loop: more than any descriptor limit allows
)

// get returns the stream in slot, nil when none.
func (t *rlTable) get(slot int32) *rlConn {
	if slot < 0 {
		return nil
	}
	ch := t.chunks[slot>>rlChunkBits].Load()
	if ch == nil {
		return nil
	}
	return ch[slot&(1<<rlChunkBits-1)].Load()
}

// take gives out a free slot holding rc and sets rc.slot (under mu);
// false when every slot is used.
func (t *rlTable) take(rc *rlConn) bool {
	var slot int32
	if k := len(t.free); k > 0 {
		slot = t.free[k-1]
		t.free = t.free[:k-1]
	} else {
		if int(t.made) >= rlMaxChunks<<rlChunkBits {
			return false
		}
		slot = t.made
		t.made++
		if slot&(1<<rlChunkBits-1) == 0 {
			t.chunks[slot>>rlChunkBits].Store(new(rlChunk))
		}
	}
	rc.slot = slot // before the store that publishes rc to the loop
	t.chunks[slot>>rlChunkBits].Load()[slot&(1<<rlChunkBits-1)].Store(rc)
	return true
}

// clear empties slot (under mu); it is given out again after the batch.
func (t *rlTable) clear(slot int32) {
	t.chunks[slot>>rlChunkBits].Load()[slot&(1<<rlChunkBits-1)].Store(nil)
	t.later = append(t.later, slot)
}

// release makes the slots cleared in the batch free (under mu).
func (t *rlTable) release() {
	t.free = append(t.free, t.later...)
	t.later = t.later[:0]
}

// each calls f for every stream in the table (the loop's shutdown).
func (t *rlTable) each(f func(*rlConn)) {
	for slot := int32(0); slot < t.made; slot++ {
		if rc := t.get(slot); rc != nil {
			f(rc)
		}
	}
}
