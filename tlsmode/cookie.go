package tlsmode

import (
	"net/http"

	"github.com/tlsedge/tlsedge/affinity"
)

// CookieAffinity keeps an HTTP client on one server by a cookie (stub: being built).
type CookieAffinity struct{}

// acquireServer picks the server of a request and takes a slot on it
// (stub: the backend's pick; cookie affinity is being built).
func (p *HTTPProxy) acquireServer(req *http.Request, c *Conn, skip func(*affinity.Server) bool) (*affinity.Server, error) {
	return (*p.backend.Load()).AcquireServer(req.Context(), c, skip)
}

// cookieResponse sets the affinity cookie on a server's response (stub).
func (p *HTTPProxy) cookieResponse(resp *http.Response, rs *reqState) {}
