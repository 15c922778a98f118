package edge

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tlsedge/tlsedge/affinity"
)

// BackendInfo is one pool in GET /api/v1/backends.
type BackendInfo struct {
	Name         string          `json:"name"`
	Balance      string          `json:"balance"`
	Affinity     string          `json:"affinity"`
	Health       string          `json:"health_check"`
	DrainTimeout string          `json:"drain_timeout"`
	DrainRate    float64         `json:"drain_rate"`
	Rebalancing  *RebalancePlan  `json:"rebalancing,omitempty"`
	Discovery    *DiscoveryInfo  `json:"discovery,omitempty"` // discovery.dns's state; nil without
	Servers      []ServerInfo    `json:"servers"`
	Totals       BackendTotalsJS `json:"totals"`
}

// BackendTotalsJS sums a pool's servers.
type BackendTotalsJS struct {
	Active int64 `json:"active"`
	Up     int   `json:"servers_up"`
	Down   int   `json:"servers_down"`
}

// ServerInfo is one server of a pool.
type ServerInfo struct {
	Address          string   `json:"address"`
	Source           string   `json:"source"`            // config | dns (discovery.dns only)
	Weight           AgWeight `json:"weight"`            // in force: configured (or API) × reported percent
	ConfiguredWeight int      `json:"configured_weight"` // from the config
	// WeightSource: where Weight comes from: config, api (PUT weight,
	// which wins over reports while set), agent, health_header.
	WeightSource string       `json:"weight_source"`
	Agent        *AgAgentInfo `json:"agent,omitempty"` // the last agent check (health.agent)
	// EjectedUntil: passive ejection (outlier) keeps the server out of
	// picking until then; Ejections counts its ejections ever.
	EjectedUntil *time.Time `json:"ejected_until,omitempty"`
	Ejections    int        `json:"ejections"`
	EjectReason  string     `json:"last_ejection_reason,omitempty"`
	Health       HealthInfo `json:"health"`
	Draining     *DrainInfo `json:"draining,omitempty"`
	// Removed: a reload took the server out of the config; it drains.
	Removed bool `json:"removed,omitempty"`
	// Overrides lists the runtime changes in force ("weight", "drain"):
	// they last across reloads while the server stays in the config.
	Overrides []string `json:"overrides,omitempty"`
	Active    int64    `json:"active"`  // connections and requests in flight (what leastconn counts)
	Streams   int      `json:"streams"` // bound streams: passthrough, tcp, WebSockets
	Total     int64    `json:"total_connections"`
	BytesIn   int64    `json:"bytes_in"`  // from clients, counted when connections end
	BytesOut  int64    `json:"bytes_out"` // to clients
}

// HealthInfo is a server's health state and its last check.
type HealthInfo struct {
	State     string     `json:"state"` // up | down
	Check     string     `json:"check"` // tcp | tls | http | none
	Since     time.Time  `json:"since"` // when the state last changed
	LastCheck *time.Time `json:"last_check,omitempty"`
	LastError string     `json:"last_error,omitempty"`
}

// DrainInfo is a drain in progress.
type DrainInfo struct {
	By       string    `json:"by"` // api | reload | dns (gone from discovery.dns) | agent (health.agent said drain or maint)
	Since    time.Time `json:"since"`
	Deadline time.Time `json:"deadline"` // from then, streams left are closed at drain_rate
	Left     int64     `json:"connections_left"`
}

// ConnInfo is one live connection in the connection directory.
type ConnInfo struct {
	ID       uint64    `json:"id"`
	Listener string    `json:"listener"`
	Route    string    `json:"route"`
	Mode     string    `json:"mode"`
	Protocol string    `json:"protocol"` // tcp | http | the protocol an http connection upgraded to (websocket)
	Backend  string    `json:"backend"`
	SNI      string    `json:"sni"`
	Source   string    `json:"source"`
	Server   string    `json:"server,omitempty"`
	Client   *ClientJS `json:"client,omitempty"`
	Start    time.Time `json:"start"`
	Seconds  float64   `json:"age_seconds"`
	BytesUp  int64     `json:"bytes_up"`   // from the client so far (TLS records included)
	BytesDn  int64     `json:"bytes_down"` // to the client so far
	Requests int64     `json:"requests,omitempty"`
	Closing  string    `json:"closing,omitempty"` // why, once something ended it
}

// ClientJS is the verified client certificate of a connection.
type ClientJS struct {
	Subject string   `json:"subject"`
	Issuer  string   `json:"issuer"`
	CN      string   `json:"cn,omitempty"`
	URIs    []string `json:"uri,omitempty"`
	DNS     []string `json:"dns,omitempty"`
	Emails  []string `json:"email,omitempty"`
	Serial  string   `json:"serial"`
	SHA256  string   `json:"sha256"`
	Expires string   `json:"not_after"`
}

func (e *Edge) apiRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/backends", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"backends": e.backendsInfo("")})
	})
	mux.HandleFunc("GET /api/v1/backends/{pool}", func(w http.ResponseWriter, r *http.Request) {
		bs := e.backendsInfo(r.PathValue("pool"))
		if len(bs) == 0 {
			writeError(w, http.StatusNotFound, fmt.Errorf("no backend named %q", r.PathValue("pool")))
			return
		}
		writeJSON(w, http.StatusOK, bs[0])
	})
	mux.HandleFunc("POST /api/v1/backends/{pool}/servers/{address}/drain", e.serverAction(func(p *Pool, st *serverState, _ *http.Request) (int, error) {
		e.ops.drain(p, st, "api")
		e.log.Info().Str("backend", p.Name).Str("server", st.srv.Address).Dur("drain_timeout", p.drainTimeout).
			Float64("drain_rate", p.drainRate).Msg("server draining (admin API)")
		return http.StatusOK, nil
	}))
	mux.HandleFunc("POST /api/v1/backends/{pool}/servers/{address}/enable", e.serverAction(func(p *Pool, st *serverState, _ *http.Request) (int, error) {
		if !e.ops.enable(st) {
			return http.StatusConflict, fmt.Errorf("server %s was removed from backend %s by a reload and is draining; add it to the config again to use it", st.srv.Address, p.Name)
		}
		e.log.Info().Str("backend", p.Name).Str("server", st.srv.Address).Msg("server enabled (admin API)")
		return http.StatusOK, nil
	}))
	mux.HandleFunc("PUT /api/v1/backends/{pool}/servers/{address}/weight", e.serverAction(func(p *Pool, st *serverState, r *http.Request) (int, error) {
		var body struct {
			Weight *int `json:"weight"`
		}
		if err := decodeBody(r, &body); err != nil {
			return http.StatusBadRequest, err
		}
		if body.Weight == nil || *body.Weight < 0 || *body.Weight > affinity.MaxWeight {
			return http.StatusBadRequest, fmt.Errorf(`want {"weight": N} with N from 0 (no new connections) to %d`, affinity.MaxWeight)
		}
		st.setOverride(*body.Weight)
		e.log.Info().Str("backend", p.Name).Str("server", st.srv.Address).Int("weight", *body.Weight).Msg("server weight set (admin API)")
		return http.StatusOK, nil
	}))
	mux.HandleFunc("DELETE /api/v1/backends/{pool}/servers/{address}/weight", e.serverAction(func(p *Pool, st *serverState, _ *http.Request) (int, error) {
		st.setOverride(-1)
		e.log.Info().Str("backend", p.Name).Str("server", st.srv.Address).Msg("server weight back to the config's (admin API)")
		return http.StatusOK, nil
	}))
	mux.HandleFunc("POST /api/v1/backends/{pool}/rebalance", e.handleRebalance)
	mux.HandleFunc("GET /api/v1/backends/{pool}/rebalance", func(w http.ResponseWriter, r *http.Request) {
		if plan := e.ops.current(r.PathValue("pool")); plan != nil {
			writeJSON(w, http.StatusOK, plan)
			return
		}
		writeError(w, http.StatusNotFound, fmt.Errorf("no rebalance of %q is running", r.PathValue("pool")))
	})
	mux.HandleFunc("POST /api/v1/reload", func(w http.ResponseWriter, _ *http.Request) {
		sum, err := e.ReloadFile("admin API")
		if err != nil {
			writeError(w, http.StatusUnprocessableEntity, err)
			return
		}
		writeJSON(w, http.StatusOK, sum)
	})
	mux.HandleFunc("GET /api/v1/connections", e.handleConnections)
	mux.HandleFunc("GET /api/v1/certificates", e.handleCertificates)
	mux.HandleFunc("GET /api/v1/reloads", e.handleReloads)
	mux.HandleFunc("GET /api/v1/connections/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, status, err := e.connByID(r.PathValue("id"))
		if err != nil {
			writeError(w, status, err)
			return
		}
		writeJSON(w, http.StatusOK, connInfo(c))
	})
	mux.HandleFunc("DELETE /api/v1/connections/{id}", func(w http.ResponseWriter, r *http.Request) {
		c, status, err := e.connByID(r.PathValue("id"))
		if err != nil {
			writeError(w, status, err)
			return
		}
		if !c.Shutdown(reasonAdmin) {
			writeError(w, http.StatusConflict, fmt.Errorf("connection %d is already closing: %s", c.ID, c.ShutdownReason()))
			return
		}
		info := connInfo(c)
		e.log.Info().Uint64("id", c.ID).Str("client", info.Source).Str("server", info.Server).Msg("connection closed by the admin API")
		writeJSON(w, http.StatusOK, info)
	})
}

// serverAction runs act on the server {address} of pool {pool} of the
// config in force, then answers with the server's state.
func (e *Edge) serverAction(act func(*Pool, *serverState, *http.Request) (int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, addr := r.PathValue("pool"), r.PathValue("address")
		run := e.running.Load()
		p := run.pools[name]
		if p == nil {
			writeError(w, http.StatusNotFound, fmt.Errorf("no backend named %q", name))
			return
		}
		s := p.Server(addr)
		if s == nil {
			for _, rm := range e.ops.removed()[name] {
				if rm.st.srv.Address == addr {
					writeError(w, http.StatusConflict, fmt.Errorf("server %s was removed from backend %s by a reload and is draining; add it to the config again to use it", addr, name))
					return
				}
			}
			writeError(w, http.StatusNotFound, fmt.Errorf("backend %s has no server %q (servers: %s)", name, addr, serverList(p)))
			return
		}
		if status, err := act(p, p.states[s], r); err != nil {
			writeError(w, status, err)
			return
		}
		writeJSON(w, http.StatusOK, e.serverInfo(p, p.states[s], nil))
	}
}

func serverList(p *Pool) string {
	var out []string
	for _, s := range p.Servers {
		out = append(out, s.Address)
	}
	return strings.Join(out, ", ")
}

func (e *Edge) handleRebalance(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("pool")
	p := e.running.Load().pools[name]
	if p == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("no backend named %q", name))
		return
	}
	above, rate := DefaultRebalanceAbove, float64(DefaultRebalanceRate)
	if rc := p.rebalance; rc != nil {
		above, rate = rc.Above, rc.Rate
	}
	var body struct {
		Above *float64 `json:"above"`
		Rate  *float64 `json:"rate"`
	}
	if err := decodeBody(r, &body); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if body.Above != nil {
		above = *body.Above
	}
	if body.Rate != nil {
		rate = *body.Rate
	}
	if !(above >= 1 && above <= 100) || !rateOK(rate) {
		writeError(w, http.StatusBadRequest, fmt.Errorf("above must be from 1 to 100 and rate from %v to %v a second", MinRate, MaxRate))
		return
	}
	if p.affinity != affinity.None {
		writeError(w, http.StatusConflict, fmt.Errorf("backend %s hashes clients to servers (affinity): closed clients would come back to the same server", name))
		return
	}
	plan, err := e.ops.rebalance(p, above, rate)
	if err != nil {
		writeError(w, http.StatusConflict, err)
		return
	}
	writeJSON(w, http.StatusAccepted, plan)
}

// decodeBody reads an optional JSON body into v; unknown fields are errors.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("bad JSON body: %v", err)
	}
	return nil
}

// backendsInfo describes the pools in force (only name, when not empty),
// with the servers a reload removed that are still draining (also of
// backends the reload removed whole).
func (e *Edge) backendsInfo(name string) []BackendInfo {
	run := e.running.Load()
	removed := e.ops.removed()
	set := map[string]bool{}
	for n := range run.pools {
		set[n] = true
	}
	for n := range removed {
		set[n] = true
	}
	var names []string
	for n := range set {
		if name == "" || n == name {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	out := []BackendInfo{}
	for _, n := range names {
		p := run.pools[n]
		b := BackendInfo{Name: n, Rebalancing: e.ops.current(n), Servers: []ServerInfo{}}
		if p != nil {
			b.Health, b.DrainTimeout, b.DrainRate = p.health.Type, p.drainTimeout.String(), p.drainRate
			b.Discovery = p.disc.info()
			for _, s := range p.Servers {
				b.Servers = append(b.Servers, e.serverInfo(p, p.states[s], nil))
			}
		}
		if bc := run.cfg.backend(n); bc != nil {
			b.Balance, b.Affinity = bc.Balance, bc.Affinity
		}
		for _, rm := range removed[n] {
			b.Servers = append(b.Servers, e.serverInfo(p, rm.st, &rm))
		}
		for _, si := range b.Servers {
			b.Totals.Active += si.Active
			if si.Health.State == "up" {
				b.Totals.Up++
			} else {
				b.Totals.Down++
			}
		}
		out = append(out, b)
	}
	return out
}

// serverInfo describes server st of pool p (nil for a backend a reload
// removed); rm is set for a server a reload removed.
func (e *Edge) serverInfo(p *Pool, st *serverState, rm *removedServer) ServerInfo {
	s := st.srv
	conf, eff, over := st.weights()
	checked, checkErr, since := st.health()
	check := "removed"
	if p != nil && rm == nil {
		check = p.health.Type
	}
	si := ServerInfo{
		Address: s.Address, Source: p.discSource(s.Address), Weight: AgWeight(eff), ConfiguredWeight: conf, Removed: rm != nil,
		Health: HealthInfo{State: "up", Check: check, Since: since, LastError: checkErr},
		Active: max(s.Active(), 0), Streams: e.reg.boundCount(s),
		Total: st.total.Load(), BytesIn: st.bytesIn.Load(), BytesOut: st.bytesOut.Load(),
	}
	if !s.Healthy() {
		si.Health.State = "down"
	}
	si.WeightSource, si.Agent = st.weightSource(), st.agAgentInfo()
	si.EjectedUntil, si.Ejections, si.EjectReason = st.agEjectionInfo()
	if !checked.IsZero() {
		si.Health.LastCheck = &checked
	}
	if over {
		si.Overrides = append(si.Overrides, "weight")
	}
	by, since := st.drain()
	if rm != nil {
		si.Source = "config"
		if by == "dns" {
			si.Source = "dns"
		}
	}
	if by != "" {
		si.Draining = &DrainInfo{By: by, Since: since, Left: si.Active}
		switch {
		case by == "agent": // an agent's drain closes nothing
		case rm != nil:
			si.Draining.Deadline = rm.deadline
		case p != nil:
			si.Draining.Deadline = since.Add(p.drainTimeout)
		}
		if by == "api" {
			si.Overrides = append(si.Overrides, "drain")
		}
	}
	return si
}

// AgWeight is a weight in force: fractional when a server reports its
// load (0.25 for weight 1 at 25 %). It prints as the shortest decimal
// with any verb (%d, %v: "1", "0.25"), so callers that printed the former
// integer weight keep working; in JSON it is a number.
type AgWeight float64

// Format implements fmt.Formatter.
func (w AgWeight) Format(f fmt.State, _ rune) {
	_, _ = io.WriteString(f, strconv.FormatFloat(float64(w), 'f', -1, 64))
}
