package tlsmode

import (
	"errors"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strings"

	"golang.org/x/crypto/cryptobyte"
)

// DefaultMaxHello is the default cap on the bytes ReadHello reads.
const DefaultMaxHello = 16 << 10

// Errors returned by ReadHello. Each class is distinct and callers classify
// with errors.Is; read errors from the underlying reader are none of these.
var (
	// ErrNotTLS: the first record is not a handshake record carrying a
	// ClientHello (plain HTTP, SSLv2-style hellos, other protocols).
	ErrNotTLS = errors.New("tlsmode: not a TLS handshake")
	// ErrMalformedHello: the stream started as TLS but the records or the
	// ClientHello break the RFCs.
	ErrMalformedHello = errors.New("tlsmode: malformed client hello")
	// ErrHelloTooLarge: the hello needs more bytes than the cap allows.
	ErrHelloTooLarge = errors.New("tlsmode: client hello too large")
	// ErrNoSNI: a complete, well-formed hello without a usable server name.
	// ReadHello returns the *Hello alongside it.
	ErrNoSNI = errors.New("tlsmode: client hello has no server name")
)

// Hello is what routing needs from a ClientHello.
type Hello struct {
	ServerName string   // from server_name ext, lowercased; "" when absent or an IP literal (RFC 6066 forbids IP literals)
	ALPN       []string // protocol names offered, in order
	Versions   []uint16 // supported_versions extension if present (GREASE values removed), else the legacy_version
	Raw        []byte   // every byte ReadHello read from r, to be replayed verbatim to the server / to crypto/tls
}

// Wire constants (RFC 8446 §5.1, §4, §4.2; RFC 6066 §3; RFC 7301 §3.1).
const (
	helloRecordHeaderLen    = 5       // ContentType(1) ProtocolVersion(2) uint16 length
	helloMaxFragment        = 1 << 14 // RFC 8446 §5.1: length MUST NOT exceed 2^14
	helloRecordHandshake    = 22      // ContentType handshake
	helloTypeClientHello    = 1       // HandshakeType client_hello
	helloHandshakeHeaderLen = 4       // HandshakeType(1) uint24 length
	helloExtServerName      = 0       // RFC 6066 §3
	helloExtALPN            = 16      // RFC 7301 §3.1
	helloExtSupportedVers   = 43      // RFC 8446 §4.2.1
	helloNameTypeHostName   = 0       // RFC 6066 §3 NameType host_name
)

// ReadHello reads TLS records from r until one complete ClientHello handshake
// message has been read, and parses it.
//
// It reads exactly the records it needs (record header, then body, with
// io.ReadFull) and never more, so nothing is left buffered: the caller replays
// Hello.Raw and then reads r again from the byte after the hello. max <= 0
// means DefaultMaxHello; a hello that needs more than max bytes in total is
// ErrHelloTooLarge, detected as early as the lengths on the wire allow and
// before the excess is read.
//
// A complete hello with no usable server name (no server_name extension, no
// host_name entry, or an IP literal) returns the *Hello AND an error wrapping
// ErrNoSNI, so callers can route it to the default route. An SNI with a
// trailing dot is ErrMalformedHello (RFC 6066 §3). Read errors from r are
// returned wrapped ("reading client hello: %w"), never as ErrMalformedHello,
// so errors.Is(err, os.ErrDeadlineExceeded) recognizes a deadline; a stream
// that ends mid-hello returns a wrapped io.ErrUnexpectedEOF and a stream that
// ends before its first byte a wrapped io.EOF. An early end or read error is
// reported as ErrNotTLS instead when the bytes already read rule out TLS.
// Errors other than ErrNoSNI return a nil *Hello.
//
// Bytes after the end of the ClientHello inside its last record are
// ErrMalformedHello: a client sends nothing else before the server's flight,
// and in TLS 1.3 a key change follows the ClientHello, which handshake data
// must not span (RFC 8446 §5.1). Records after the hello's last record are
// not read at all.
//
// ReadHello keeps no state; r is only read, never closed.
func ReadHello(r io.Reader, max int) (*Hello, error) {
	if max <= 0 {
		max = DefaultMaxHello
	}
	var (
		box    = new(helloBox) // the Hello, and the first record header while it is read
		raw    []byte          // every byte read; the single growing buffer returned as Raw
		hs     []byte          // handshake bytes: an alias into raw while one record holds them, else owned
		owned  bool            // hs is its own buffer (the hello spans records)
		msgLen = -1            // length of the whole handshake message with its header, once known
	)
records:
	for first := true; ; first = false {
		// Record header (RFC 8446 §5.1 TLSPlaintext; RFC 5246 §6.2.1).
		if len(raw)+helloRecordHeaderLen > max {
			return nil, helloTooLarge(max)
		}
		var hdr []byte
		if first {
			hdr = box.hdr[:]
			if err := helloRead(r, hdr, 0, false); err != nil {
				return nil, err
			}
			// RFC 8446 §5.1 ContentType handshake, RFC 5246 Appendix E
			// record versions: anything else is not a TLS client.
			if !helloLooksLikeTLS(hdr) {
				return nil, ErrNotTLS
			}
		} else {
			raw = helloGrow(raw, helloRecordHeaderLen, max)
			if err := helloRead(r, raw, len(raw)-helloRecordHeaderLen, true); err != nil {
				return nil, err
			}
			hdr = raw[len(raw)-helloRecordHeaderLen:]
			// RFC 8446 §5.1: handshake messages MUST NOT be interleaved
			// with other record types.
			if hdr[0] != helloRecordHandshake {
				return nil, helloMalformed("record of type %d inside the client hello", hdr[0])
			}
			// RFC 8446 §5.1 / RFC 5246 §6.2.1 and Appendix E: record
			// versions 0x0300-0x0304 only.
			if hdr[1] != 3 || hdr[2] > 4 {
				return nil, helloMalformed("record version %#04x", int(hdr[1])<<8|int(hdr[2]))
			}
		}
		n := int(hdr[3])<<8 | int(hdr[4])
		// RFC 8446 §5.1: no zero-length handshake fragments, and a
		// fragment MUST NOT exceed 2^14 bytes (record_overflow).
		if n == 0 {
			return nil, helloMalformed("zero-length handshake record")
		}
		if n > helloMaxFragment {
			return nil, helloMalformed("record length %d exceeds 2^14", n)
		}
		read := len(raw) // bytes read so far; the first header is in box.hdr
		if first {
			read = helloRecordHeaderLen
		}
		if read+n > max {
			return nil, helloTooLarge(max)
		}
		if first {
			// Exact for the common single-record hello.
			raw = make([]byte, helloRecordHeaderLen, helloRecordHeaderLen+n)
			copy(raw, hdr)
		}
		body := len(raw)
		raw = helloGrow(raw, n, max)
		if err := helloRead(r, raw, body, true); err != nil {
			return nil, err
		}
		if first && raw[body] != helloTypeClientHello {
			// RFC 8446 §4: the first handshake message is a ClientHello.
			return nil, ErrNotTLS
		}

		// Reassemble the handshake message across records (RFC 8446
		// §5.1: a message may be fragmented over several records).
		switch {
		case hs == nil:
			hs = raw[body:]
		case !owned:
			c := len(hs) + n
			if msgLen > c {
				c = msgLen
			}
			buf := make([]byte, len(hs), c)
			copy(buf, hs)
			hs, owned = append(buf, raw[body:]...), true
		default:
			hs = append(hs, raw[body:]...)
		}
		if msgLen < 0 && len(hs) >= helloHandshakeHeaderLen {
			msgLen = helloHandshakeHeaderLen + (int(hs[1])<<16 | int(hs[2])<<8 | int(hs[3]))
		}
		switch {
		case msgLen < 0:
			continue // the handshake header itself is split across records
		case len(hs) > msgLen:
			// Decision documented above: trailing bytes after the
			// ClientHello in its last record are malformed (RFC 8446 §5.1).
			return nil, helloMalformed("%d bytes after the client hello in its record", len(hs)-msgLen)
		case len(hs) == msgLen:
			break records
		case len(raw)+helloRecordHeaderLen+msgLen-len(hs) > max:
			// At least one more record header and the rest of the message.
			return nil, helloTooLarge(max)
		default:
			// Only now, with the size checked against max, reserve room
			// for the rest: the message in hs, and in raw the rest at this
			// record's size (clients cut a message into equal fragments).
			rest := msgLen - len(hs)
			if owned {
				hs = slices.Grow(hs, rest)
			}
			need := min(len(raw)+rest+helloRecordHeaderLen*((rest+n-1)/n), max)
			if need > cap(raw) {
				raw = slices.Grow(raw, need-len(raw))
			}
		}
	}

	var f helloFields
	if err := f.parse(hs[helloHandshakeHeaderLen:]); err != nil {
		return nil, err
	}
	h := &box.h
	h.Raw = raw
	return h, f.fill(box)
}

// helloBox is the one allocation behind a Hello: the first record header is
// read into it, and short version and ALPN lists live in it.
type helloBox struct {
	h    Hello
	hdr  [helloRecordHeaderLen]byte
	vers [4]uint16
	alpn [2]string
}

// helloGrow extends raw by n bytes, reallocating if needed: doubling, capped
// at limit, for hellos in many records. The caller has checked that
// len(raw)+n <= limit.
func helloGrow(raw []byte, n, limit int) []byte {
	off := len(raw)
	if cap(raw)-off < n {
		buf := make([]byte, off, min(max(off+n, 2*cap(raw)), limit))
		copy(buf, raw)
		raw = buf
	}
	return raw[:off+n]
}

// helloRead fills buf[off:] from r. On failure it reports ErrNotTLS when
// the bytes read so far already rule out TLS, else the read error wrapped;
// eofMidHello turns a clean io.EOF into io.ErrUnexpectedEOF: the stream
// ended between records of a hello.
func helloRead(r io.Reader, buf []byte, off int, eofMidHello bool) error {
	got, err := io.ReadFull(r, buf[off:])
	if err == nil {
		return nil
	}
	if !helloLooksLikeTLS(buf[:off+got]) {
		return ErrNotTLS
	}
	if err == io.EOF && eofMidHello {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("reading client hello: %w", err)
}

// helloLooksLikeTLS reports whether the first bytes of a stream can still be
// the start of a TLS ClientHello: a handshake record (RFC 8446 §5.1,
// ContentType 22) with a record version 0x0300-0x0304 (RFC 5246 Appendix E
// for 0x0300-0x0303; RFC 8446 §5.1 legacy_record_version), whose first
// handshake message is a client_hello (RFC 8446 §4). An SSLv2-style hello
// (first byte with the high bit set, RFC 5246 Appendix E.2) and plain text
// such as "GET / HTTP/1.1" fail on the first byte.
func helloLooksLikeTLS(b []byte) bool {
	switch {
	case len(b) > 0 && b[0] != helloRecordHandshake:
		return false
	case len(b) > 1 && b[1] != 3:
		return false
	case len(b) > 2 && b[2] > 4:
		return false
	case len(b) > helloRecordHeaderLen && b[helloRecordHeaderLen] != helloTypeClientHello:
		return false
	}
	return true
}

func helloMalformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformedHello}, args...)...)
}

func helloTooLarge(max int) error {
	return fmt.Errorf("%w: more than %d bytes", ErrHelloTooLarge, max)
}

// helloFields are the parts of a ClientHello that routing needs, as views
// into the message, validated. Nothing is allocated until fill.
type helloFields struct {
	legacyVersion uint16
	host          cryptobyte.String // host_name, validated; nil when absent
	hostMaybeIP   bool              // host has only digits and dots, or a colon
	alpn          cryptobyte.String // protocol_name_list, validated; nil when absent
	alpnCount     int
	versions      cryptobyte.String // supported_versions list, validated; nil when absent
}

// parse parses the body of a ClientHello handshake message (without its
// 4-byte header) with chained cryptobyte reads in the manner of crypto/tls
// clientHelloMsg.unmarshal.
func (f *helloFields) parse(b []byte) error {
	s := cryptobyte.String(b)

	// RFC 8446 §4.1.2 / RFC 5246 §7.4.1.2:
	//   ProtocolVersion legacy_version; Random random (32 bytes);
	//   opaque legacy_session_id<0..32>;
	//   CipherSuite cipher_suites<2..2^16-2>;
	//   opaque legacy_compression_methods<1..2^8-1>;
	//   Extension extensions<8..2^16-1>  (may be absent before TLS 1.3).
	var sessionID, suites, comp cryptobyte.String
	if !s.ReadUint16(&f.legacyVersion) || !s.Skip(32) {
		return helloMalformed("short legacy_version or random")
	}
	if !s.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 {
		return helloMalformed("bad legacy_session_id")
	}
	if !s.ReadUint16LengthPrefixed(&suites) || len(suites) == 0 || len(suites)%2 != 0 {
		return helloMalformed("bad cipher_suites")
	}
	if !s.ReadUint8LengthPrefixed(&comp) || len(comp) == 0 {
		return helloMalformed("bad legacy_compression_methods")
	}
	if s.Empty() {
		return nil // RFC 5246 §7.4.1.2: a client may omit the extensions block.
	}
	var exts cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&exts) {
		return helloMalformed("bad extensions length")
	}
	if !s.Empty() {
		// RFC 8446 §4.1.2: the extensions block ends the message.
		return helloMalformed("%d bytes after the extensions", len(s))
	}

	// RFC 8446 §4.2: "There MUST NOT be more than one extension of the
	// same type in a given extension block." Types below 64 (nearly all
	// in use) go in a bitmap; the rest are sorted and compared at the end.
	var low uint64
	var highBuf [16]uint16
	high := highBuf[:0]
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return helloMalformed("truncated extension")
		}
		if typ < 64 {
			if low&(1<<typ) != 0 {
				return helloMalformed("duplicate extension %d", typ)
			}
			low |= 1 << typ
		} else {
			high = append(high, typ)
		}
		var err error
		switch typ {
		case helloExtServerName:
			err = f.parseServerName(data)
		case helloExtALPN:
			err = f.parseALPN(data)
		case helloExtSupportedVers:
			err = f.parseVersions(data)
		}
		if err != nil {
			return err
		}
	}
	if len(high) > 1 {
		slices.Sort(high)
		for i := 1; i < len(high); i++ {
			if high[i] == high[i-1] {
				return helloMalformed("duplicate extension %d", high[i])
			}
		}
	}
	return nil
}

// parseServerName parses the server_name extension (RFC 6066 §3):
//
//	struct { NameType name_type; select (name_type) { case host_name: HostName; } name; } ServerName;
//	opaque HostName<1..2^16-1>;
//	struct { ServerName server_name_list<1..2^16-1> } ServerNameList;
func (f *helloFields) parseServerName(data cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return helloMalformed("bad server_name list")
	}
	var host cryptobyte.String
	for !list.Empty() {
		var typ uint8
		var name cryptobyte.String
		if !list.ReadUint8(&typ) || !list.ReadUint16LengthPrefixed(&name) || name.Empty() {
			return helloMalformed("bad server_name entry")
		}
		if typ != helloNameTypeHostName {
			continue // unknown name types are skipped, as crypto/tls does
		}
		if host != nil {
			// RFC 6066 §3: no more than one name of the same name_type.
			return helloMalformed("several host_name entries")
		}
		host = name
	}
	if host == nil {
		return nil
	}
	// RFC 6066 §3: HostName is an ASCII DNS hostname "without a trailing
	// dot"; RFC 1035 §2.3.1: labels are not empty. Control characters,
	// spaces, NUL and bytes above 0x7e are rejected (they have no place in
	// a hostname and would poison routing and logs).
	digitsDots, colon := true, false
	for i, c := range host {
		switch {
		case c <= ' ' || c > '~':
			return helloMalformed("byte %#02x in server name", c)
		case c == '.':
			if i == 0 || host[i-1] == '.' {
				return helloMalformed("empty label in server name")
			}
		case c == ':':
			colon = true
			digitsDots = false
		case c < '0' || c > '9':
			digitsDots = false
		}
	}
	if host[len(host)-1] == '.' {
		return helloMalformed("server name with a trailing dot")
	}
	f.host, f.hostMaybeIP = host, digitsDots || colon
	return nil
}

// parseALPN parses application_layer_protocol_negotiation (RFC 7301 §3.1):
//
//	opaque ProtocolName<1..2^8-1>;
//	struct { ProtocolName protocol_name_list<2..2^16-1> } ProtocolNameList;
func (f *helloFields) parseALPN(data cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || list.Empty() || !data.Empty() {
		return helloMalformed("bad ALPN list")
	}
	count := 0
	for rest := list; !rest.Empty(); count++ {
		var name cryptobyte.String
		if !rest.ReadUint8LengthPrefixed(&name) || name.Empty() {
			return helloMalformed("bad ALPN protocol name")
		}
	}
	f.alpn, f.alpnCount = list, count
	return nil
}

// parseVersions parses the ClientHello form of supported_versions (RFC 8446
// §4.2.1): ProtocolVersion versions<2..254>.
func (f *helloFields) parseVersions(data cryptobyte.String) error {
	var list cryptobyte.String
	if !data.ReadUint8LengthPrefixed(&list) || list.Empty() || len(list)%2 != 0 || !data.Empty() {
		return helloMalformed("bad supported_versions list")
	}
	f.versions = list
	return nil
}

// fill copies the validated fields into box.h: one string allocation holds
// the server name and every ALPN name; short lists live in the box. It
// returns ErrNoSNI (possibly wrapped) when there is no usable server name.
func (f *helloFields) fill(box *helloBox) error {
	h := &box.h
	if f.versions == nil {
		h.Versions = append(box.vers[:0:len(box.vers)], f.legacyVersion)
	} else {
		h.Versions = box.vers[:0:len(box.vers)]
		for v := f.versions; !v.Empty(); {
			var x uint16
			v.ReadUint16(&x) // cannot fail: even length checked in parseVersions
			// RFC 8701 §2: GREASE versions are 0x?a?a with equal bytes.
			if x&0x0f0f == 0x0a0a && x>>8 == x&0xff {
				continue
			}
			h.Versions = append(h.Versions, x)
		}
	}

	var sb strings.Builder
	sb.Grow(len(f.host) + len(f.alpn))
	for _, c := range f.host {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		sb.WriteByte(c)
	}
	sb.Write(f.alpn)
	all := sb.String()
	h.ServerName = all[:len(f.host)]
	if f.alpn != nil {
		h.ALPN = box.alpn[:0:len(box.alpn)]
		if f.alpnCount > len(box.alpn) {
			h.ALPN = make([]string, 0, f.alpnCount)
		}
		for off := len(f.host); off < len(all); {
			n := int(all[off])
			h.ALPN = append(h.ALPN, all[off+1:off+1+n])
			off += 1 + n
		}
	}

	if h.ServerName == "" {
		return ErrNoSNI
	}
	if f.hostMaybeIP {
		if ip, err := netip.ParseAddr(h.ServerName); err == nil {
			// RFC 6066 §3: literal IPv4 and IPv6 addresses are not
			// permitted in HostName; treat one as no server name.
			h.ServerName = ""
			return fmt.Errorf("%w: IP literal %s", ErrNoSNI, ip)
		}
	}
	return nil
}
