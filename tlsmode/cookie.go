package tlsmode

// CookieAffinity keeps an HTTP client on one server by a cookie (stub: being built).
type CookieAffinity struct{}
