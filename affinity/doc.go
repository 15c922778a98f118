// Package affinity picks the upstream server for one connection.
//
// It owns three things and knows nothing about TLS or sockets:
//
//   - hash keys: [KeyFor] turns the addresses of a connection into a [Key]
//     according to an affinity [Mode] (source_ip, class_c, five_tuple);
//   - per-server state: a [Server] carries its weight, health, drain flag and
//     live-connection count as atomics, so it can be shared by the pool
//     snapshots of several reloads;
//   - policies: a [Picker] chooses one server from a slice. Each policy is a
//     small type in its own file, with its math explained there:
//     rendezvous.go (weighted consistent hashing), bounded.go (consistent
//     hashing with bounded loads), roundrobin.go (smooth weighted
//     round-robin), leastconn.go (weighted least connections) and random.go
//     (weighted power of two choices).
//
// [NewPicker] assembles the policy a backend's config asks for: with an
// affinity mode, keys that are Valid go to consistent hashing and every other
// key to the balance policy; without one, the balance policy decides alone.
//
// Every Pick is short: it never waits for I/O, never dials and does not
// allocate.
package affinity
