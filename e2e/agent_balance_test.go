package e2e

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Load reported by servers, end to end: agents (HAProxy's agent-check
// protocol) on 127.0.0.1-3 answer a line each, tlsedge scales the servers'
// weights by it; the servers count the client connections tlsedge opens to
// them. Counts, never timings.

// agCounter is a plain TCP server: a connection whose first byte is 'G' is
// an HTTP health check (answered 200, with X-Tlsedge-Weight when set);
// any other is a client connection relayed by tlsedge: counted and held
// open until closed.
type agCounter struct {
	addr   string
	n      atomic.Int64
	weight atomic.Value // string: the X-Tlsedge-Weight header, "" = none
	group  *connGroup
}

func agStartCounter(t *testing.T, ip string) *agCounter {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	c := &agCounter{addr: ln.Addr().String(), group: newConnGroup(t, "counter "+ip)}
	c.weight.Store("")
	t.Cleanup(c.group.stop)
	c.group.serve(ln, func(conn net.Conn) {
		_ = conn.SetReadDeadline(time.Now().Add(waitLong))
		br := bufio.NewReader(conn)
		b, err := br.Peek(1)
		if err != nil {
			return
		}
		if b[0] == 'G' {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			h := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n"
			if w := c.weight.Load().(string); w != "" {
				h += "X-Tlsedge-Weight: " + w + "\r\n"
			}
			_, _ = io.WriteString(conn, h+"\r\nok")
			return
		}
		c.n.Add(1)
		_ = conn.SetReadDeadline(time.Time{})
		_, _ = io.Copy(io.Discard, br) // held until tlsedge or the cleanup closes it
	})
	return c
}

// agAgents listens on port P of each ip (one port for all: health.agent.port
// is per backend) and answers each connection with that ip's line.
type agAgents struct {
	port  int
	lines map[string]*atomic.Value // by ip
}

func agStartAgents(t *testing.T, ips ...string) *agAgents {
	t.Helper()
	for range 50 {
		_, ps, _ := net.SplitHostPort(freeAddr(t))
		port, _ := strconv.Atoi(ps)
		a := &agAgents{port: port, lines: map[string]*atomic.Value{}}
		g := newConnGroup(t, "agents")
		ok := true
		for _, ip := range ips {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, ps))
			if err != nil {
				ok = false
				break
			}
			v := &atomic.Value{}
			v.Store("100%")
			a.lines[ip] = v
			g.serve(ln, func(conn net.Conn) { _, _ = io.WriteString(conn, v.Load().(string)+"\n") })
		}
		t.Cleanup(g.stop)
		if ok {
			return a
		}
		g.stop()
	}
	t.Fatal("no port free on every loopback address for the agents")
	return nil
}

func (a *agAgents) set(ip, line string) { a.lines[ip].Store(line) }

// agEdgeCfg is a config with one route ag.example.com (terminate or
// reencrypt, protocol tcp) to backend, logs in JSON, and the admin API; it returns the admin
// address too.
func agEdgeCfg(t *testing.T, mode string, backend cfgMap) (cfgMap, string) {
	t.Helper()
	leaf, err := thePKI.serverCert("ag-edge")
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := leaf.WriteFiles(t.TempDir(), "edge")
	if err != nil {
		t.Fatal(err)
	}
	route := cfgMap{"sni": []any{"ag.example.com"}, "mode": mode, "protocol": "tcp", "backend": backend["name"],
		"tls": cfgMap{"cert": cert, "key": key}}
	cfg := cfgMap{
		"log": cfgMap{"level": "info", "format": "json", "access": true},
		"listeners": []any{cfgMap{"name": "public", "address": "", "connection_rate_per_ip": 0,
			"max_connections_per_ip": 5000, "routes": []any{route}}},
		"backends": []any{backend},
	}
	return cfg, withAdmin(t, cfg)
}

// agDial opens a verified TLS connection to tlsedge for ag.example.com and
// sends a line, so that the server sees a client byte first.
func agDial(addr string) (*tls.Conn, error) {
	pool := x509.NewCertPool()
	pool.AddCert(thePKI.serverCA.Cert)
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: waitLong}, "tcp", addr, &tls.Config{ServerName: "ag.example.com", RootCAs: pool})
	if err != nil {
		return nil, err
	}
	if _, err := io.WriteString(c, "x\n"); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// agOpen opens n connections one after the other, each held open, waiting
// (bounded) for a server to count it before the next; it returns how many
// each counter got.
func agOpen(t *testing.T, addr string, n int, cs ...*agCounter) []int {
	t.Helper()
	before := make([]int64, len(cs))
	var sum int64
	for i, c := range cs {
		before[i] = c.n.Load()
		sum += before[i]
	}
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	})
	for i := range n {
		c, err := agDial(addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		mu.Lock()
		held = append(held, c)
		mu.Unlock()
		want := sum + int64(i) + 1
		if !poll(waitLong, func() bool {
			var got int64
			for _, c := range cs {
				got += c.n.Load()
			}
			return got >= want
		}) {
			t.Fatalf("connection %d: no server counted it", i)
		}
	}
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = int(c.n.Load() - before[i])
	}
	return out
}

// agAPIServer is the part of a server in GET /api/v1/backends/{pool} these
// tests read (weight is fractional: 0.25 for weight 1 at 25 %).
type agAPIServer struct {
	Address          string  `json:"address"`
	Weight           float64 `json:"weight"`
	ConfiguredWeight int     `json:"configured_weight"`
	WeightSource     string  `json:"weight_source"`
	Agent            *struct {
		Reply string `json:"last_reply"`
	} `json:"agent"`
	Draining *struct {
		By string `json:"by"`
	} `json:"draining"`
	EjectedUntil *time.Time `json:"ejected_until"`
	Ejections    int        `json:"ejections"`
}

func agServers(a *adminClient, pool string) map[string]agAPIServer {
	var b struct {
		Servers []agAPIServer `json:"servers"`
	}
	if st := a.get("/api/v1/backends/"+pool, &b); st != http.StatusOK {
		a.t.Fatalf("GET backend %s: %d", pool, st)
	}
	out := map[string]agAPIServer{}
	for _, s := range b.Servers {
		out[s.Address] = s
	}
	return out
}

// agWaitAPI polls the backend until cond holds (bounded).
func agWaitAPI(t *testing.T, a *adminClient, pool, what string, cond func(map[string]agAPIServer) bool) map[string]agAPIServer {
	t.Helper()
	var last map[string]agAPIServer
	if !poll(waitLong, func() bool { last = agServers(a, pool); return cond(last) }) {
		t.Fatalf("waiting for %s: backend %s servers %+v", what, pool, last)
	}
	return last
}

// agShare is 100 × q / the mean of the peers: the quarter server's share
// of a peer's connections, in percent.
func agShare(counts []int) float64 {
	return 100 * float64(counts[2]) / (float64(counts[0]+counts[1]) / 2)
}

// Agents answering 100%, 100% and 25%: the third server gets a quarter of
// a peer's connections (± 5 points) over 400 under roundrobin and under
// leastconn; its agent's drain stops new connections to it (0 of 50),
// ready brings it back.
func TestAgentWeightsBalance(t *testing.T) {
	t.Parallel()
	for _, balance := range []string{"roundrobin", "leastconn"} {
		t.Run(balance, func(t *testing.T) {
			t.Parallel()
			ips := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
			cs := []*agCounter{agStartCounter(t, ips[0]), agStartCounter(t, ips[1]), agStartCounter(t, ips[2])}
			agents := agStartAgents(t, ips...)
			agents.set(ips[2], "25%")
			pool := "ag-" + balance
			cfg, admin := agEdgeCfg(t, "terminate", cfgMap{"name": pool, "balance": balance,
				"servers": []any{cfgMap{"address": cs[0].addr}, cfgMap{"address": cs[1].addr}, cfgMap{"address": cs[2].addr}},
				"health":  cfgMap{"type": "none", "agent": cfgMap{"port": agents.port, "interval": "250ms", "timeout": "250ms"}}})
			e := runEdge(t, cfg)
			a := newAdmin(t, admin)
			agWaitAPI(t, a, pool, "the agents' weights", func(m map[string]agAPIServer) bool {
				return m[cs[0].addr].Weight == 1 && m[cs[1].addr].Weight == 1 && m[cs[2].addr].Weight == 0.25 &&
					m[cs[2].addr].WeightSource == "agent" && m[cs[2].addr].ConfiguredWeight == 1 &&
					m[cs[2].addr].Agent != nil && m[cs[2].addr].Agent.Reply == "25%"
			})

			counts := agOpen(t, e.addr, 400, cs...)
			if s := agShare(counts); s < 20 || s > 30 {
				t.Errorf("400 connections split %v: the 25%% server got %.1f%% of a peer's; want 25 ± 5", counts, s)
			}

			agents.set(ips[2], "25% drain")
			agWaitAPI(t, a, pool, "the agent's drain", func(m map[string]agAPIServer) bool {
				return m[cs[2].addr].Draining != nil && m[cs[2].addr].Draining.By == "agent"
			})
			if got := agOpen(t, e.addr, 50, cs...); got[2] != 0 {
				t.Errorf("while its agent says drain, the server got %d of 50 new connections (split %v); want 0", got[2], got)
			}
			if live := cs[2].group.live(); live < counts[2] {
				t.Errorf("the drained server holds %d connections; want its %d (an agent's drain closes nothing)", live, counts[2])
			}

			agents.set(ips[2], "25% ready")
			agWaitAPI(t, a, pool, "the agent's ready", func(m map[string]agAPIServer) bool { return m[cs[2].addr].Draining == nil })
			if got := agOpen(t, e.addr, 50, cs...); got[2] == 0 {
				t.Errorf("after ready the server got 0 of 50 new connections (split %v); want some", got)
			}
		})
	}
}

// An http check answering X-Tlsedge-Weight: 50 on one of three servers
// halves its share: 50 % of a peer's connections (± 5 points) over 400
// under roundrobin; the API says health_header.
func TestAgentHealthHeaderWeight(t *testing.T) {
	t.Parallel()
	cs := []*agCounter{agStartCounter(t, "127.0.0.1"), agStartCounter(t, "127.0.0.1"), agStartCounter(t, "127.0.0.1")}
	cs[2].weight.Store("50")
	cfg, admin := agEdgeCfg(t, "terminate", cfgMap{"name": "ag-header", "balance": "roundrobin",
		"servers": []any{cfgMap{"address": cs[0].addr}, cfgMap{"address": cs[1].addr}, cfgMap{"address": cs[2].addr}},
		"health":  cfgMap{"type": "http", "path": "/health", "interval": "100ms", "timeout": "1s", "rise": 1, "fall": 2}})
	e := runEdge(t, cfg)
	a := newAdmin(t, admin)
	agWaitAPI(t, a, "ag-header", "the header's weight", func(m map[string]agAPIServer) bool {
		return m[cs[2].addr].Weight == 0.5 && m[cs[2].addr].WeightSource == "health_header" &&
			m[cs[0].addr].Weight == 1 && m[cs[0].addr].WeightSource == "config"
	})
	counts := agOpen(t, e.addr, 400, cs...)
	if s := agShare(counts); s < 45 || s > 55 {
		t.Errorf("400 connections split %v: the server at X-Tlsedge-Weight 50 got %.1f%% of a peer's; want 50 ± 5", counts, s)
	}
	cs[2].weight.Store("")
	agWaitAPI(t, a, "ag-header", "the header gone", func(m map[string]agAPIServer) bool {
		return m[cs[2].addr].Weight == 1 && m[cs[2].addr].WeightSource == "config"
	})
}
