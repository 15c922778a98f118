package edge

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Agent checks (HAProxy's agent-check protocol): every health.agent.interval
// tlsedge connects to the server's host on health.agent.port and reads one
// line of words separated by commas, spaces or tabs:
//
//	75%            the server takes 75 % of its configured weight (0-100;
//	               above 100 counts as 100, HAProxy's up-to-256 % is capped)
//	up / down      the server is up / down, as a health check would say
//	               (HAProxy's "fail" and "stopped" are down too)
//	drain, maint   no new connections; live ones carry on (not closed)
//	ready          ends a drain (or maint) the agent started
//
// Words may be combined ("75% drain"); text after '#' is a comment; other
// words (HAProxy's "maxconn:N") are ignored. A line with no word tlsedge
// knows, a malformed percentage, a failed connect or a timeout change
// nothing (the agent is advisory): they are counted and logged, at most
// once a minute per server.
const (
	agAgentMaxLine         = 1024 // bytes read of the agent's line
	agAgentDefaultInterval = 2 * time.Second
	agAgentDefaultTimeout  = 1 * time.Second
	agAgentLogEvery        = time.Minute
)

// agAgentReply is one parsed agent line.
type agAgentReply struct {
	Percent int    // -1: none in the line
	State   string // "", "up" or "down"
	Admin   string // "", "drain" (also maint) or "ready"
}

// agParseAgentLine parses one agent line (without its newline).
func agParseAgentLine(line string) (agAgentReply, error) {
	r := agAgentReply{Percent: -1}
	if i := strings.IndexByte(line, '#'); i >= 0 {
		line = line[:i]
	}
	known := 0
	for _, w := range strings.FieldsFunc(line, func(c rune) bool {
		return c == ',' || c == ' ' || c == '\t' || c == '\r' || c == '\n'
	}) {
		lw := strings.ToLower(w)
		switch lw {
		case "up":
			r.State = "up"
		case "down", "fail", "failed", "stopped":
			r.State = "down"
		case "drain", "maint":
			r.Admin = "drain"
		case "ready":
			r.Admin = "ready"
		default:
			if !strings.HasSuffix(lw, "%") {
				continue // maxconn:N and words tlsedge does not use
			}
			n, err := strconv.ParseFloat(strings.TrimSuffix(lw, "%"), 64)
			if err != nil || n < 0 || n != n {
				return agAgentReply{Percent: -1}, fmt.Errorf("agent: %q is not a percentage", w)
			}
			r.Percent = int(min(n, 100)) // HAProxy takes up to 256 %; the weight never grows
		}
		known++
	}
	if known == 0 {
		return agAgentReply{Percent: -1}, fmt.Errorf("agent: no word tlsedge knows in %q", agTrimLine(line))
	}
	return r, nil
}

func agTrimLine(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// agAgentSettings returns the agent's port, interval and timeout with
// their defaults.
func agAgentSettings(a *AgentCheckConfig) (port int, interval, timeout time.Duration) {
	interval, timeout = a.Interval, a.Timeout
	if interval <= 0 {
		interval = agAgentDefaultInterval
	}
	if timeout <= 0 {
		timeout = agAgentDefaultTimeout
	}
	return a.Port, interval, min(timeout, interval)
}

// agAgentAsk connects to host:port and reads one line, bounded by timeout
// and agAgentMaxLine bytes. A line cut by EOF counts; an empty answer is
// an error.
func agAgentAsk(ctx context.Context, host string, port int, timeout time.Duration) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: -1}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return "", trimOp(err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	br := bufio.NewReaderSize(io.LimitReader(conn, agAgentMaxLine), agAgentMaxLine)
	line, err := br.ReadString('\n')
	if err != nil && !(errors.Is(err, io.EOF) && line != "") {
		if errors.Is(err, io.EOF) {
			return "", errors.New("closed without an answer")
		}
		return "", trimOp(err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// agAgent is the agent check loop of one server.
type agAgent = checkLoop[agAgentOwn]

// agAgentOwn is an agent loop's own state.
type agAgentOwn struct {
	lastLog time.Time // the last failure logged
	quiet   int       // failures not logged since

	// mu orders applying an answer against turning the agent off: agOnce
	// applies under mu only while its ctx is live, and agOff runs after
	// the ctx was cancelled and clears the reports under mu, so an answer
	// read before the agent was turned off is never applied after the
	// clear.
	mu sync.Mutex
	// beforeApply, if set (tests), runs after the answer is read and
	// before it is applied.
	beforeApply func()
}

// agLoops returns the agent checks' loops: for the pools with a
// health.agent, asked every health.agent.interval (±10 % jitter).
func (h *healthChecks) agLoops() checkLoops[agAgentOwn] {
	return checkLoops[agAgentOwn]{name: "agent check", log: &h.e.log,
		enabled: func(p *Pool) bool { return p.health.Agent != nil },
		interval: func(p *Pool) time.Duration {
			_, d, _ := agAgentSettings(p.health.Agent)
			return d
		},
		once: h.agOnce,
		off:  agOff,
	}
}

// agOff clears the reports of an agent turned off on a server still in
// the config: its weight, down and drain no longer apply.
func agOff(a *agAgent) {
	a.own.mu.Lock()
	defer a.own.mu.Unlock()
	a.st.setReported(true, -1)
	a.st.setAgentDown(false)
	a.st.agClearDrain()
}

// agOnce runs and applies one agent check.
func (h *healthChecks) agOnce(ctx context.Context, p *Pool, a *agAgent) {
	s, own := a.st.srv, &a.own
	port, _, timeout := agAgentSettings(p.health.Agent)
	host, _, _ := net.SplitHostPort(s.Address)
	line, err := agAgentAsk(ctx, host, port, timeout)
	if ctx.Err() != nil {
		return
	}
	var r agAgentReply
	if err == nil {
		r, err = agParseAgentLine(line)
	}
	now := time.Now()
	if err != nil {
		a.st.agRecord(now, line, err.Error())
		h.e.m.agAgentCheck(p.Name, s.Address, false)
		if now.Sub(own.lastLog) >= agAgentLogEvery {
			h.e.log.Warn().Str("backend", p.Name).Str("server", s.Address).Int("agent_port", port).
				Str("reason", err.Error()).Int("failures_not_logged", own.quiet).
				Msg("agent check failed: the server's weight and state stay as they were")
			own.lastLog, own.quiet = now, 0
		} else {
			own.quiet++
		}
		return
	}
	if own.beforeApply != nil {
		own.beforeApply()
	}
	own.mu.Lock()
	defer own.mu.Unlock()
	if ctx.Err() != nil { // turned off (or stopped) meanwhile
		return
	}
	a.st.agRecord(now, line, "")
	h.e.m.agAgentCheck(p.Name, s.Address, true)
	h.agApply(p, a.st, r, line)
}

// agApply applies a parsed agent answer to st, logging each change.
func (h *healthChecks) agApply(p *Pool, st *serverState, r agAgentReply, line string) {
	s := st.srv
	ev := func(msg string) {
		h.e.log.Info().Str("backend", p.Name).Str("server", s.Address).Str("agent", agTrimLine(line)).Msg(msg)
	}
	if r.Percent >= 0 && st.setReported(true, r.Percent) {
		ev("server weight set by its agent")
	}
	switch r.State {
	case "down":
		if st.setAgentDown(true) {
			h.e.log.Warn().Str("backend", p.Name).Str("server", s.Address).Str("agent", agTrimLine(line)).Msg("server down (agent)")
			h.e.m.healthChanged(p.Name, s.Address, false)
		}
	case "up":
		if st.setAgentDown(false) {
			ev("server up (agent)")
			if s.Healthy() {
				h.e.m.healthChanged(p.Name, s.Address, true)
			}
		}
	}
	switch r.Admin {
	case "drain":
		if st.startDrain("agent") {
			ev("server draining (agent): no new connections, live ones carry on")
		}
	case "ready":
		if st.agClearDrain() {
			ev("server ready (agent): drain ended")
		}
	}
}

// agRecord records an agent check's answer (err "" = read and parsed).
func (st *serverState) agRecord(t time.Time, line, err string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.agentAt, st.agentErr = t, err
	if err == "" {
		st.agentLine = agTrimLine(line)
	}
}

// agClearDrain ends a drain the agent started (not one by the API or a
// reload); true when it did.
func (st *serverState) agClearDrain() bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.drainBy != "agent" {
		return false
	}
	st.drainBy, st.drainSince = "", time.Time{}
	st.srv.SetDraining(false)
	return true
}

// AgAgentInfo is a server's last agent check in the admin API.
type AgAgentInfo struct {
	Reply     string    `json:"last_reply,omitempty"` // the last line read
	Percent   *int      `json:"percent,omitempty"`    // the percentage in force from it
	Down      bool      `json:"down,omitempty"`       // the agent said down
	LastCheck time.Time `json:"last_check"`
	LastError string    `json:"last_error,omitempty"` // the last check's failure ("" = answered)
}

// agAgentInfo returns the agent's state, nil when no check ran yet.
func (st *serverState) agAgentInfo() *AgAgentInfo {
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.agentAt.IsZero() {
		return nil
	}
	ai := &AgAgentInfo{Reply: st.agentLine, Down: st.agentDown, LastCheck: st.agentAt, LastError: st.agentErr}
	if st.agentPct >= 0 {
		pct := st.agentPct
		ai.Percent = &pct
	}
	return ai
}
