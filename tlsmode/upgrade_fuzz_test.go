package tlsmode

import (
	"encoding/binary"
	"testing"
)

// WebSocket frames after an upgrade are peer bytes both ways (client and
// server); frameTracker follows their boundaries so that shutdown can put a
// close frame between two frames.

// fzWSPos is where the stream stands after some bytes, by RFC 6455 §5.2.
type fzWSPos struct {
	boundary bool   // between two frames
	left     uint64 // bytes of the current frame still to come, as far as known
	broken   bool   // a 64-bit length with its top bit set: not WebSocket framing
}

// fzWSRef walks data by RFC 6455 §5.2 and returns the position after each
// prefix (pos[i]: after data[:i]) and, for each i, whether a close frame
// (opcode 8) ends exactly there.
func fzWSRef(data []byte) (pos []fzWSPos, closeEnds []bool) {
	pos = make([]fzWSPos, len(data)+1)
	closeEnds = make([]bool, len(data)+1)
	pos[0] = fzWSPos{boundary: true}
	at := 0 // start of the current frame
	for at < len(data) {
		// Header: 2 bytes, then 2 or 8 of length, then 4 of mask.
		need := 2
		hdrEnd := -1
		for i := at + 1; i <= len(data); i++ {
			n := i - at
			if n == 2 {
				switch data[at+1] & 0x7f {
				case 126:
					need += 2
				case 127:
					need += 8
				}
				if data[at+1]&0x80 != 0 {
					need += 4
				}
			}
			if n < 2 {
				pos[i] = fzWSPos{left: uint64(2 - n)}
			} else if n < need {
				pos[i] = fzWSPos{left: uint64(need - n)}
			} else {
				hdrEnd = i
				break
			}
		}
		if hdrEnd < 0 {
			return pos, closeEnds
		}
		var plen uint64
		switch l := data[at+1] & 0x7f; l {
		case 126:
			plen = uint64(binary.BigEndian.Uint16(data[at+2:]))
		case 127:
			plen = binary.BigEndian.Uint64(data[at+2:])
			if plen>>63 != 0 {
				for i := hdrEnd; i <= len(data); i++ {
					pos[i] = fzWSPos{broken: true}
				}
				return pos, closeEnds
			}
		default:
			plen = uint64(l)
		}
		isClose := data[at]&0x0f == 8
		end := uint64(hdrEnd) + plen
		for i := hdrEnd; i <= len(data) && uint64(i) < end; i++ {
			pos[i] = fzWSPos{left: end - uint64(i)}
		}
		if end > uint64(len(data)) {
			return pos, closeEnds
		}
		pos[end] = fzWSPos{boundary: true}
		closeEnds[end] = isClose
		at = int(end)
	}
	return pos, closeEnds
}

// FuzzFrameTracker feeds any byte stream to a frameTracker in pieces cut
// where the fuzzer says, and checks it against a reference walk of RFC
// 6455 framing after every piece: at a boundary exactly between frames,
// left() the bytes of the current frame (or of its header, while the
// length is unknown) still to come, broken exactly after a length with the
// top bit set, and feed reports a close exactly when a close frame ends in
// the piece; the answer does not depend on how the stream is cut.
func FuzzFrameTracker(f *testing.F) {
	mask := []byte{1, 2, 3, 4}
	f.Add(wsFrame(1, []byte("hello"), nil), []byte{})
	f.Add(append(wsFrame(2, wsPayload(300), mask), wsFrame(8, closePayload(1000, "bye"), mask)...), []byte{1, 1, 5, 200})
	f.Add(append(wsFrame(9, nil, nil), wsFrame(8, nil, nil)...), []byte{1})
	f.Add(wsFrame(2, wsPayload(70000), nil)[:20], []byte{3, 7})
	f.Add([]byte{0x82, 0x7f, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2}, []byte{2})
	f.Add([]byte{0x88, 0xfe, 0x00}, []byte{1, 1})
	f.Fuzz(func(t *testing.T, data, cuts []byte) {
		if len(data) > 1<<14 {
			return // longer streams only repeat frames
		}
		pos, closeEnds := fzWSRef(data)
		var ft frameTracker
		at := 0
		for k := 0; at < len(data); k++ {
			n := len(data) - at
			if k < len(cuts) && int(cuts[k]) < n {
				n = int(cuts[k])
			}
			closed := ft.feed(data[at : at+n])
			want := false
			for i := at + 1; i <= at+n; i++ {
				want = want || (closeEnds[i] && !pos[i-1].broken)
			}
			at += n
			p := pos[at]
			if ft.broken != p.broken {
				t.Fatalf("after %d bytes: broken %v; want %v", at, ft.broken, p.broken)
			}
			if p.broken {
				continue
			}
			if closed != want || ft.atBoundary() != p.boundary || ft.left() != p.left {
				t.Fatalf("after %d bytes (piece of %d): closed %v boundary %v left %d; want %v %v %d",
					at, n, closed, ft.atBoundary(), ft.left(), want, p.boundary, p.left)
			}
		}
	})
}
