package edge

import (
	"crypto/tls"
	"fmt"
	"runtime/debug"
	"slices"
	"time"

	"github.com/tlsedge/tlsedge/certs"
)

// acmeBuild is what one build collects about ACME.
type acmeBuild struct {
	table      *Table   // the first route table the build made: in force once swapped in
	names      []string // the exact names of acme: true routes
	configured bool     // PrepareACME was called by this build
	watching   bool     // acmeAfterSwap started
}

// acmeSwapWait bounds how long a build's watcher waits for its config to
// be put in force (a refused reload never is).
const acmeSwapWait = time.Minute

// acmeTable makes a listener's route table, remembering the build's first.
func (b *builder) acmeTable() *Table {
	t := newTable()
	if b.acme.table == nil {
		b.acme.table = t
		if b.e.certs != nil && len(b.e.certs.ManagedNames()) > 0 {
			b.acmeWatch() // names may have to be unmanaged
		}
	}
	return t
}

// acmeRoute prepares the ACME state of the config built for a route with
// tls.acme (once per build: the first such route's listener answers
// tls-alpn-01 for certmagic), records the route and collects its names.
// Nothing changes for the config in force until acmeCommit.
func (b *builder) acmeRoute(lc *ListenerConfig, rc *RouteConfig) error {
	if !b.acme.configured {
		a := &b.cfg.Certs.ACME
		var caRootPEM []byte
		if a.CARoot != "" {
			var err error
			if caRootPEM, err = b.cfg.readFile(a.CARoot); err != nil {
				return fmt.Errorf("certs.acme.ca_root: %w", err)
			}
		}
		opts := certs.ACMEOptions{
			Email:              a.Email,
			Directory:          a.Directory,
			CARoot:             b.cfg.resolve(a.CARoot),
			CARootPEM:          caRootPEM,
			Challenges:         a.Challenges,
			TLSALPNAddress:     lc.Address,
			HTTPAddress:        a.HTTPAddress,
			RenewalWindowRatio: a.RenewalWindowRatio,
			OnDemand:           a.OnDemand,
			Ask:                a.Ask,
			OnDemandOrders:     a.OnDemandOrders,
			OnDemandInterval:   a.OnDemandInterval,
		}
		b.acme.configured = true // AbortACME undoes even a failed prepare
		if mo := b.e.certs.Options(); mo.Storage != b.cfg.storage() || mo.RenewInterval != a.RenewInterval {
			b.e.log.Warn().Str("storage", mo.Storage).Dur("renew_interval", mo.RenewInterval).
				Msg("certs.storage and certs.acme.renew_interval are read at start: the values in force stay until a restart")
		}
		if err := b.e.certs.PrepareACME(opts); err != nil {
			return err
		}
	}
	var names []string
	for _, s := range rc.SNI {
		if n, err := NormalizePattern(s); err == nil {
			names = append(names, n)
		}
	}
	if len(names) > 0 {
		b.e.certs.AddACMERoute(acmeRouteKey(lc.Name, names[0]), rc.TLS.ACME.Mode() == "on_demand", names)
	}
	if rc.TLS.ACME.Mode() == "on" {
		for _, n := range names {
			if !slices.Contains(b.acme.names, n) {
				b.acme.names = append(b.acme.names, n)
			}
		}
	}
	b.acmeWatch()
	return nil
}

// acmeRouteKey names a route for certs.Manager.AddACMERoute and
// AcmeChallengeRoute: its listener and its first sni pattern (Route's
// Listener and Pattern).
func acmeRouteKey(listener, pattern string) string {
	return listener + "\x00" + pattern
}

// acmeCommit puts the ACME state and routes of the build in force (at the
// swap): with no tls.acme route in the build, ACME is off.
func (b *builder) acmeCommit() {
	if b.e.certs != nil {
		b.e.certs.CommitACME()
	}
}

// acmeAbort drops what the build prepared for ACME (a refused config):
// the state in force is left as it was.
func (b *builder) acmeAbort() {
	if b.e.certs != nil && b.acme.configured {
		b.e.certs.AbortACME()
	}
}

// acmeGetCertificate is the GetCertificate of a route with tls.acme.
func acmeGetCertificate(rc *RouteConfig, m *certs.Manager) (func(*tls.ClientHelloInfo) (*tls.Certificate, error), error) {
	var names []string
	for _, s := range rc.SNI {
		if n, err := NormalizePattern(s); err == nil {
			names = append(names, n)
		}
	}
	staple := func(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
		if rc.TLS.OCSPStapling == "off" {
			return get
		}
		return m.WithStapling(get)
	}
	if rc.TLS.ACME.Mode() == "on_demand" {
		get, err := m.OnDemandRoute(names)
		if err != nil {
			return nil, err
		}
		return staple(get), nil
	}
	return staple(m.ACMERoute(names)), nil
}

// acmeWatch starts, once per build, the goroutine that puts the build's
// acme names under management once the build is in force.
func (b *builder) acmeWatch() {
	if b.acme.watching || b.acme.table == nil {
		return
	}
	b.acme.watching = true
	go b.e.acmeAfterSwap(b)
}

// acmeAfterSwap waits (bounded by acmeSwapWait) until the build b is in
// force, its listeners bound, then starts obtaining the certificates of
// its acme: true names in the background and stops managing the names it
// no longer has. Started before the listeners are bound, certmagic could
// open its own listener on their address for a tls-alpn-01 validation.
func (e *Edge) acmeAfterSwap(b *builder) {
	defer func() {
		if r := recover(); r != nil {
			e.log.Error().Interface("panic", r).Bytes("stack", debug.Stack()).Msg("acme: managing names crashed")
		}
	}()
	inForce := func() bool {
		tables := e.tables.Load()
		if tables == nil {
			return false
		}
		for _, t := range *tables {
			if t == b.acme.table {
				return true
			}
		}
		return false
	}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	limit := time.NewTimer(acmeSwapWait)
	defer limit.Stop()
	for !inForce() {
		select {
		case <-e.ctx.Done():
			return
		case <-limit.C:
			return
		case <-tick.C:
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	m := e.certs
	if m == nil || !inForce() {
		return // shut down, or a newer build is in force (its own watcher acts)
	}
	var gone []string
	for _, n := range m.ManagedNames() {
		if !slices.Contains(b.acme.names, n) {
			gone = append(gone, n)
		}
	}
	if len(gone) > 0 {
		m.UnmanageACME(gone)
		e.log.Info().Strs("names", gone).Msg("acme: names no longer managed")
	}
	if len(b.acme.names) == 0 {
		return
	}
	if err := m.ManageACME(e.ctx, b.acme.names); err != nil {
		e.log.Error().Err(err).Strs("names", b.acme.names).Msg("acme: cannot manage names")
		return
	}
	e.log.Info().Strs("names", b.acme.names).Msg("acme: obtaining or renewing certificates in the background")
}
