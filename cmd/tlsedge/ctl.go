package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/viper"

	"github.com/tlsedge/tlsedge/edge"
)

// defaultAdmin is where ctl looks for the admin API when neither --admin
// nor TLSEDGE_ADMIN_ADDRESS says otherwise: the address the docs suggest
// for admin.address.
const defaultAdmin = "127.0.0.1:9900"

// ctlOptions are the persistent flags of `tlsedge ctl`.
type ctlOptions struct {
	env     *viper.Viper
	admin   string
	output  string
	cacert  string
	cert    string
	key     string
	timeout time.Duration
}

// ctlCmd is `tlsedge ctl`, the operator's command line for the admin API
// of a running tlsedge (edge/admin_api.go).
func ctlCmd(env *viper.Viper) *cobra.Command {
	o := &ctlOptions{env: env}
	cmd := &cobra.Command{
		Use:   "ctl SUBCOMMAND",
		Short: "operate a running tlsedge through its admin API: servers, rebalance, connections, reload",
		Long: `ctl calls the admin API of a running tlsedge (admin.address of its config).

The admin endpoint is --admin, else TLSEDGE_ADMIN_ADDRESS, else ` + defaultAdmin + `.
Plain HTTP unless --admin is an https:// URL or one of --cacert, --cert, --key
is given. API errors are printed on stderr, and the command exits 1.`,
		Args: cobra.NoArgs,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.admin, "admin", "", "admin endpoint: host:port or an http:// or https:// URL; env TLSEDGE_ADMIN_ADDRESS, else "+defaultAdmin)
	pf.StringVarP(&o.output, "output", "o", "table", "table | json (json: the API's answer as is, indented)")
	pf.StringVar(&o.cacert, "cacert", "", "CA file (PEM) that verifies the admin server's certificate; implies https; env TLSEDGE_ADMIN_CACERT")
	pf.StringVar(&o.cert, "cert", "", "client certificate (PEM) for an admin endpoint that requires one; implies https; env TLSEDGE_ADMIN_CERT")
	pf.StringVar(&o.key, "key", "", "the client certificate's key (PEM); env TLSEDGE_ADMIN_KEY")
	pf.DurationVar(&o.timeout, "timeout", 10*time.Second, "time allowed for each call, connecting included")
	cmd.AddCommand(ctlBackendsCmd(o), ctlServerCmd(o, "drain"), ctlServerCmd(o, "enable"), ctlWeightCmd(o),
		ctlRebalanceCmd(o), ctlConnectionsCmd(o), ctlCloseCmd(o), ctlReloadCmd(o), ctlHealthCmd(o), ctlCertificatesCmd(o))
	return cmd
}

func ctlBackendsCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "backends [POOL]",
		Short: "list pools and their servers: health, weights, live connections, drains",
		Args:  cobra.MaximumNArgs(1),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				return ctlCall(c, http.MethodGet, "/api/v1/backends/"+url.PathEscape(args[0]), nil, nil,
					func(w io.Writer, b *edge.BackendInfo) { printBackends(w, []edge.BackendInfo{*b}) })
			}
			return ctlCall(c, http.MethodGet, "/api/v1/backends", nil, nil,
				func(w io.Writer, b *backendList) { printBackends(w, b.Backends) })
		}),
	}
}

// ctlServerCmd is `drain` or `enable` of one server.
func ctlServerCmd(o *ctlOptions, action string) *cobra.Command {
	short := "stop new connections to a server; its live ones close after the pool's drain_timeout"
	if action == "enable" {
		short = "end a server's drain: it takes new connections again"
	}
	return &cobra.Command{
		Use:   action + " POOL ADDRESS",
		Short: short,
		Args:  cobra.ExactArgs(2),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			return ctlCall(c, http.MethodPost, serverPath(args[0], args[1], action), nil, nil,
				func(w io.Writer, s *edge.ServerInfo) { printServerChange(w, args[0], action, s) })
		}),
	}
}

func ctlWeightCmd(o *ctlOptions) *cobra.Command {
	var reset bool
	cmd := &cobra.Command{
		Use:   "weight POOL ADDRESS N | weight POOL ADDRESS --reset",
		Short: "set a server's weight at run time (0 = no new connections), or --reset it to the config's",
		Long: `weight overrides the weight of a server until --reset; the override lasts
across reloads while the server stays in the config.`,
		Args: cobra.RangeArgs(2, 3),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			if reset != (len(args) == 2) {
				return usageError(cmd, "weight: give either N or --reset")
			}
			path := serverPath(args[0], args[1], "weight")
			if reset {
				return ctlCall(c, http.MethodDelete, path, nil, nil,
					func(w io.Writer, s *edge.ServerInfo) { printServerChange(w, args[0], "reset", s) })
			}
			n, err := strconv.Atoi(args[2])
			if err != nil {
				return usageError(cmd, "weight: %q is not a whole number", args[2])
			}
			return ctlCall(c, http.MethodPut, path, nil, map[string]int{"weight": n},
				func(w io.Writer, s *edge.ServerInfo) { printServerChange(w, args[0], "weight", s) })
		}),
	}
	cmd.Flags().BoolVar(&reset, "reset", false, "put the config's weight back in force")
	return cmd
}

func ctlRebalanceCmd(o *ctlOptions) *cobra.Command {
	var above, rate float64
	var status bool
	cmd := &cobra.Command{
		Use:   "rebalance POOL [--above X] [--rate Y] | rebalance POOL --status",
		Short: "close connections of servers above X × their fair share, Y a second; --status shows the one running",
		Long: `rebalance closes the streams of servers holding more than --above times their
fair share (the pool's connections split by weight), at --rate a second, so
that clients reconnect to servers with room. Both default to the pool's
rebalance keys, else 1.25 and 10. --status shows the rebalance in progress.`,
		Args: cobra.ExactArgs(1),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			changed := cmd.Flags().Changed("above") || cmd.Flags().Changed("rate")
			if status && changed {
				return usageError(cmd, "rebalance: --status takes no --above or --rate")
			}
			path := "/api/v1/backends/" + url.PathEscape(args[0]) + "/rebalance"
			if status {
				return ctlCall(c, http.MethodGet, path, nil, nil,
					func(w io.Writer, p *edge.RebalancePlan) { printPlan(w, p, true) })
			}
			body := map[string]float64{}
			if cmd.Flags().Changed("above") {
				body["above"] = above
			}
			if cmd.Flags().Changed("rate") {
				body["rate"] = rate
			}
			return ctlCall(c, http.MethodPost, path, nil, body,
				func(w io.Writer, p *edge.RebalancePlan) { printPlan(w, p, false) })
		}),
	}
	cmd.Flags().Float64Var(&above, "above", edge.DefaultRebalanceAbove, "close on servers holding more than this many times their fair share (1 or more)")
	cmd.Flags().Float64Var(&rate, "rate", edge.DefaultRebalanceRate, "connections closed a second")
	cmd.Flags().BoolVar(&status, "status", false, "show the rebalance of POOL in progress instead of starting one")
	return cmd
}

func ctlConnectionsCmd(o *ctlOptions) *cobra.Command {
	filters := []struct{ name, help string }{
		{"client", "verified client certificate: CN, URI or DNS SAN, or SHA-256 (hex)"},
		{"sni", "server name the client sent"},
		{"route", "route pattern, as in the config (api.example.com, *.example.com, *)"},
		{"server", "server address (host:port)"},
		{"source", "client address (ip or ip:port)"},
	}
	vals := make([]string, len(filters))
	var limit int
	cmd := &cobra.Command{
		Use:   "connections [ID] [--client X] [--sni X] [--route X] [--server X] [--source X] [--limit N]",
		Short: "list live connections (the connection directory), or show the one with ID",
		Args:  cobra.MaximumNArgs(1),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			q := url.Values{}
			for i, f := range filters {
				if cmd.Flags().Changed(f.name) {
					q.Set(f.name, vals[i])
				}
			}
			if cmd.Flags().Changed("limit") {
				q.Set("limit", strconv.Itoa(limit))
			}
			if len(args) == 1 && len(q) > 0 {
				return usageError(cmd, "connections: an ID takes no filters")
			}
			if len(args) == 1 {
				return ctlCall(c, http.MethodGet, "/api/v1/connections/"+url.PathEscape(args[0]), nil, nil, printConn)
			}
			return ctlCall(c, http.MethodGet, "/api/v1/connections", q, nil, printConns)
		}),
	}
	for i, f := range filters {
		cmd.Flags().StringVar(&vals[i], f.name, "", f.help)
	}
	cmd.Flags().IntVar(&limit, "limit", edge.DefaultConnLimit, "list at most N connections")
	return cmd
}

func ctlCloseCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "close ID",
		Short: "close one live connection (a WebSocket gets a close frame 1001 first)",
		Args:  cobra.ExactArgs(1),
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, args []string) error {
			return ctlCall(c, http.MethodDelete, "/api/v1/connections/"+url.PathEscape(args[0]), nil, nil, printClosed)
		}),
	}
}

func ctlReloadCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "read the config file again and put it in force; a bad one is refused with every problem listed",
		Args:  cobra.NoArgs,
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, _ []string) error {
			return ctlCall(c, http.MethodPost, "/api/v1/reload", nil, nil, printReload)
		}),
	}
}

func ctlCertificatesCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "certificates",
		Short: "list the certificates tlsedge serves: names, serial, expiry, from files or ACME",
		Args:  cobra.NoArgs,
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, _ []string) error {
			return ctlCall(c, http.MethodGet, "/api/v1/certificates", nil, nil,
				func(w io.Writer, l *certificateList) { printCertificates(w, l.Certificates, time.Now()) })
		}),
	}
}

// certificateList is the answer of GET /api/v1/certificates.
type certificateList struct {
	Certificates []edge.CertificateInfo `json:"certificates"`
}

func ctlHealthCmd(o *ctlOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "health",
		Short: "print readiness (/readyz); exit 1 when not ready (starting or shutting down)",
		Args:  cobra.NoArgs,
		RunE: o.runE(func(c *ctlClient, cmd *cobra.Command, _ []string) error {
			status, raw, err := c.call(http.MethodGet, "/readyz", nil, nil)
			if err != nil {
				return err
			}
			if status != http.StatusOK && status != http.StatusServiceUnavailable {
				return c.fail(status, raw)
			}
			var body struct {
				Status string `json:"status"`
			}
			if err := c.print(raw, &body, func() { fmt.Fprintln(c.stdout, body.Status) }); err != nil {
				return err
			}
			if status != http.StatusOK {
				return exitError{1}
			}
			return nil
		}),
	}
}

// runE is a RunE that calls f with the client the flags describe.
func (o *ctlOptions) runE(f func(c *ctlClient, cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		c, err := o.client(cmd)
		if err != nil {
			return err
		}
		return f(c, cmd, args)
	}
}

// backendList is the answer of GET /api/v1/backends.
type backendList struct {
	Backends []edge.BackendInfo `json:"backends"`
}

// usageError prints a mistake in the command line and returns exit 2.
func usageError(cmd *cobra.Command, format string, args ...any) error {
	fmt.Fprintf(cmd.ErrOrStderr(), "tlsedge ctl: "+format+"\n", args...)
	return exitError{2}
}

func serverPath(pool, addr, action string) string {
	return "/api/v1/backends/" + url.PathEscape(pool) + "/servers/" + url.PathEscape(addr) + "/" + action
}

// ---------------------------------------------------------------- the HTTP client

// ctlClient calls one admin endpoint.
type ctlClient struct {
	base   *url.URL // scheme, host and an optional path prefix
	from   string   // where the address came from, for error messages
	json   bool
	http   *http.Client
	stdout io.Writer
	stderr io.Writer
}

// client builds the client the flags and the environment describe.
func (o *ctlOptions) client(cmd *cobra.Command) (*ctlClient, error) {
	c := &ctlClient{stdout: cmd.OutOrStdout(), stderr: cmd.ErrOrStderr()}
	switch o.output {
	case "table":
	case "json":
		c.json = true
	default:
		return nil, usageError(cmd, "--output %q: want table or json", o.output)
	}
	addr, from := o.admin, "--admin"
	if addr == "" {
		addr, from = o.env.GetString("admin_address"), "TLSEDGE_ADMIN_ADDRESS"
	}
	if addr == "" {
		addr, from = defaultAdmin, "the default"
	}
	c.from = from
	cacert := o.flagOrEnv(cmd, "cacert", o.cacert, "admin_cacert")
	cert := o.flagOrEnv(cmd, "cert", o.cert, "admin_cert")
	key := o.flagOrEnv(cmd, "key", o.key, "admin_key")
	base, err := adminURL(addr, cacert != "" || cert != "" || key != "")
	if err != nil {
		return nil, usageError(cmd, "%s %q: %v", from, addr, err)
	}
	c.base = base
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if base.Scheme == "https" {
		tc, err := ctlTLS(cacert, cert, key)
		if err != nil {
			return nil, usageError(cmd, "%v", err)
		}
		tr.TLSClientConfig = tc
	}
	c.http = &http.Client{Transport: tr, Timeout: o.timeout}
	return c, nil
}

func (o *ctlOptions) flagOrEnv(cmd *cobra.Command, flag, val, envKey string) string {
	if cmd.Flags().Changed(flag) {
		return val
	}
	return o.env.GetString(envKey)
}

// adminURL turns host:port or an http(s) URL into the API's base URL.
// host:port is https when tlsWanted (a CA or client certificate is given),
// else plain http; an empty host is 127.0.0.1.
func adminURL(addr string, tlsWanted bool) (*url.URL, error) {
	if strings.Contains(addr, "://") {
		u, err := url.Parse(addr)
		if err != nil {
			return nil, err
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
			return nil, errors.New("want host:port, http://host:port or https://host:port")
		}
		if u.Scheme == "http" && tlsWanted {
			return nil, errors.New("--cacert, --cert and --key are for TLS: use https://")
		}
		return &url.URL{Scheme: u.Scheme, Host: u.Host, Path: strings.TrimSuffix(u.Path, "/")}, nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, errors.New("want host:port, http://host:port or https://host:port")
	}
	if host == "" {
		host = "127.0.0.1"
	}
	scheme := "http"
	if tlsWanted {
		scheme = "https"
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}

// ctlTLS is the client side of an https admin endpoint: the system's roots
// or cacert, and the client certificate cert/key when given.
func ctlTLS(cacert, cert, key string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cacert != "" {
		b, err := os.ReadFile(cacert)
		if err != nil {
			return nil, fmt.Errorf("--cacert: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, fmt.Errorf("--cacert %s: no PEM certificate in it", cacert)
		}
		tc.RootCAs = pool
	}
	if (cert == "") != (key == "") {
		return nil, errors.New("--cert and --key go together: give both")
	}
	if cert != "" {
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			return nil, fmt.Errorf("loading --cert %s with --key %s: %w", cert, key, err)
		}
		tc.Certificates = []tls.Certificate{pair}
	}
	return tc, nil
}

// call sends method path?q with body (nil, or a value sent as JSON) and
// returns the status and the body. A failure to reach the API is printed
// (which address, from where, a hint) and returned as exitError{1}.
func (c *ctlClient) call(method, path string, q url.Values, body any) (int, []byte, error) {
	u := c.base.String() + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tlsedge-ctl/"+versionString())
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, nil, c.unreachable(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, nil, c.unreachable(fmt.Errorf("reading the answer to %s %s: %w", method, path, err))
	}
	return resp.StatusCode, raw, nil
}

// ctlCall calls the API and prints its answer (any 2xx): decoded into T
// and printed by table, or as is with -o json. Other answers are errors.
func ctlCall[T any](c *ctlClient, method, path string, q url.Values, body any, table func(io.Writer, *T)) error {
	status, raw, err := c.call(method, path, q, body)
	if err != nil {
		return err
	}
	if status < 200 || status > 299 {
		return c.fail(status, raw)
	}
	v := new(T)
	return c.print(raw, v, func() { table(c.stdout, v) })
}
