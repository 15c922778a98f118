package edge

import (
	"testing"

	"github.com/rs/zerolog"

	"github.com/tlsedge/tlsedge/affinity"
)

// HAProxy's agent words, combinations, garbage and the percentage bounds.
func TestAgentParseLine(t *testing.T) {
	t.Parallel()
	tests := []struct {
		line    string
		want    agAgentReply
		wantErr bool
	}{
		{"75%", agAgentReply{Percent: 75}, false},
		{"0%", agAgentReply{Percent: 0}, false},
		{"100%", agAgentReply{Percent: 100}, false},
		{"256%", agAgentReply{Percent: 100}, false},
		{"150%", agAgentReply{Percent: 100}, false},
		{"12.5%", agAgentReply{Percent: 12}, false},
		{"up", agAgentReply{Percent: -1, State: "up"}, false},
		{"DOWN", agAgentReply{Percent: -1, State: "down"}, false},
		{"fail", agAgentReply{Percent: -1, State: "down"}, false},
		{"stopped", agAgentReply{Percent: -1, State: "down"}, false},
		{"drain", agAgentReply{Percent: -1, Admin: "drain"}, false},
		{"maint", agAgentReply{Percent: -1, Admin: "drain"}, false},
		{"ready", agAgentReply{Percent: -1, Admin: "ready"}, false},
		{"75% drain", agAgentReply{Percent: 75, Admin: "drain"}, false},
		{"up,ready, 50%", agAgentReply{Percent: 50, State: "up", Admin: "ready"}, false},
		{"down #disk full", agAgentReply{Percent: -1, State: "down"}, false},
		{"maxconn:30 80%\r", agAgentReply{Percent: 80}, false},
		{"", agAgentReply{Percent: -1}, true},
		{"hello world", agAgentReply{Percent: -1}, true},
		{"#only a comment", agAgentReply{Percent: -1}, true},
		{"abc%", agAgentReply{Percent: -1}, true},
		{"-5%", agAgentReply{Percent: -1}, true},
		{"up x%", agAgentReply{Percent: -1}, true},
	}
	for _, tt := range tests {
		got, err := agParseAgentLine(tt.line)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("agParseAgentLine(%q) = %+v, %v; want %+v, error %v", tt.line, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestAgentWeightHeaderParse(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int{"": -1, "50": 50, " 0 ": 0, "100": 100, "250": 100, "25%": 25, "x": -1, "-1": -1, "1.5": -1} {
		if got := agParseWeightHeader(in); got != want {
			t.Errorf("agParseWeightHeader(%q) = %d; want %d", in, got, want)
		}
	}
}

// The weight in force and its source: config, then agent or header
// percent, and the API override winning over both while set.
func TestAgentEffectiveWeight(t *testing.T) {
	t.Parallel()
	s := affinity.NewServer("127.0.0.1:1", 4)
	st := newServerState(s, 4)
	check := func(what string, wantW float64, wantSrc string) {
		t.Helper()
		_, eff, _ := st.weights()
		if eff != wantW || st.weightSource() != wantSrc {
			t.Errorf("%s: weight %v from %s; want %v from %s", what, eff, st.weightSource(), wantW, wantSrc)
		}
	}
	check("config", 4, "config")
	st.setReported(false, 50)
	check("header 50", 2, "health_header")
	st.setReported(true, 25)
	check("agent 25 over header", 1, "agent")
	st.setOverride(7)
	check("api override", 7, "api")
	st.setReported(true, 0)
	check("agent 0 under override", 7, "api")
	st.setOverride(-1)
	check("agent 0", 0, "agent")
	if s.Available() {
		t.Error("a server at 0% is available; want no new connections")
	}
	st.setReported(true, -1)
	st.setReported(false, -1)
	check("reports gone", 4, "config")
}

// The agent's down holds a server down whatever the checks say, and the
// checks' down holds it whatever the agent says.
func TestAgentDownAndChecks(t *testing.T) {
	t.Parallel()
	s := affinity.NewServer("127.0.0.1:1", 1)
	st := newServerState(s, 1)
	st.setAgentDown(true)
	if s.Healthy() {
		t.Fatal("agent down: server healthy")
	}
	st.setHealthy(true) // checks pass: still down
	if s.Healthy() {
		t.Fatal("agent down, checks up: server healthy")
	}
	st.setAgentDown(false)
	if !s.Healthy() {
		t.Fatal("agent up, checks up: server down")
	}
	st.setHealthy(false)
	st.setAgentDown(false)
	if s.Healthy() {
		t.Fatal("checks down, agent up: server healthy")
	}
}

// An agent's drain is the agent's to end; an API drain over it is not.
func TestAgentDrainReady(t *testing.T) {
	t.Parallel()
	s := affinity.NewServer("127.0.0.1:1", 1)
	st := newServerState(s, 1)
	h := &healthChecks{e: &Edge{log: zerolog.Nop()}}
	p := &Pool{Name: "b"}
	h.agApply(p, st, agAgentReply{Percent: -1, Admin: "drain"}, "drain")
	if by, _ := st.drain(); by != "agent" || s.Available() {
		t.Fatalf("after drain: by %q, available %v; want agent, false", by, s.Available())
	}
	h.agApply(p, st, agAgentReply{Percent: -1, Admin: "ready"}, "ready")
	if by, _ := st.drain(); by != "" || !s.Available() {
		t.Fatalf("after ready: by %q, available %v; want \"\", true", by, s.Available())
	}
	h.agApply(p, st, agAgentReply{Percent: -1, Admin: "drain"}, "drain")
	if !st.startDrain("api") {
		t.Fatal("API drain over an agent drain: not taken over")
	}
	h.agApply(p, st, agAgentReply{Percent: -1, Admin: "ready"}, "ready")
	if by, _ := st.drain(); by != "api" || s.Available() {
		t.Fatalf("agent ready after an API drain: by %q, available %v; want api, false", by, s.Available())
	}
}
