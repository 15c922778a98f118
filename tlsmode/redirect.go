package tlsmode

import "net/http"

// Redirect answers the requests of a protocol redirect route (stub: being built).
type Redirect struct{}

// serveRedirect answers r with a redirect to the public URL of the server
// the backend picks (stub: being built).
func (p *HTTPProxy) serveRedirect(w http.ResponseWriter, r *http.Request, cs *connState, rs *reqState) {
	http.Error(w, "501 not implemented", http.StatusNotImplemented)
}
