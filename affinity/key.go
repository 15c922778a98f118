package affinity

import (
	"encoding/binary"
	"net/netip"
)

// Key is the hash of the affinity fields of one connection.
// The zero Key (Valid false) means "no affinity key": the balance policy picks.
type Key struct {
	Hash  uint64
	Valid bool
}

// ipProtoTCP is the IANA protocol number of TCP, the protocol field of a
// five-tuple key. (tlsedge only balances TCP.)
const ipProtoTCP = 6

// KeyFor builds the affinity key of a connection for mode m.
//
// src is the client's address, after a PROXY header from a trusted proxy has
// replaced the socket's peer; dst is the local (listener) address the
// connection arrived on. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are
// unmapped first, so a client keeps its key whether it reaches a dual-stack
// or an IPv4 listener. IPv6 zones are ignored.
//
//   - SourceIP: the client IP only.
//   - ClassC: the client's /24 for IPv4, /48 for IPv6.
//   - FiveTuple: src IP, src port, dst IP, dst port and the protocol (TCP).
//     An invalid dst hashes as the zero address and port 0.
//
// None, a Mode out of range, or an invalid src give Key{} (no key).
// The hash depends only on these inputs, never on the process, so every
// instance and every version that keeps this function computes the same key.
// KeyFor does not allocate.
func KeyFor(m Mode, src, dst netip.AddrPort) Key {
	ip := src.Addr()
	if m == None || m > FiveTuple || !ip.IsValid() {
		return Key{}
	}
	ip = ip.Unmap()
	b := ip.As16() // an IPv4 address comes out as ::ffff:a.b.c.d, distinct from every real IPv6 one
	if m == ClassC {
		if ip.Is4() {
			b[15] = 0 // keep a.b.c of ::ffff:a.b.c.d: the /24
		} else {
			clear(b[6:]) // keep 48 bits
		}
	}
	// The mode seeds the hash, so the same address yields unrelated keys
	// under different modes.
	h := mix64(uint64(m) * 0x9e3779b97f4a7c15)
	h = mix64(h ^ binary.BigEndian.Uint64(b[:8]))
	h = mix64(h ^ binary.BigEndian.Uint64(b[8:]))
	if m == FiveTuple {
		d := dst.Addr().Unmap().As16()
		h = mix64(h ^ binary.BigEndian.Uint64(d[:8]))
		h = mix64(h ^ binary.BigEndian.Uint64(d[8:]))
		h = mix64(h ^ (uint64(src.Port())<<32 | uint64(dst.Port())<<8 | ipProtoTCP))
	}
	return Key{Hash: h, Valid: true}
}

// mix64 is a bijective 64-bit finalizer: splitmix64's output function with
// Stafford's "Mix13" constants. Every input bit flips each output bit with
// probability close to 1/2, so sequential inputs (neighbouring IPs, ports)
// come out as unrelated, uniformly spread hashes. Chaining
// h = mix64(h ^ word) over the words of a key gives a deterministic,
// allocation-free hash without any random seed.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// addressHash is the identity of a server for hashing: FNV-1a over the
// address string, then mix64 to spread FNV's weak high bits. It depends on
// the Address alone, so pools built from the same config on different
// instances hash every server alike.
func addressHash(address string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a 64 offset basis
	for i := 0; i < len(address); i++ {
		h ^= uint64(address[i])
		h *= 1099511628211 // FNV-1a 64 prime
	}
	return mix64(h)
}
