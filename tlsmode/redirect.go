package tlsmode

// Redirect answers the requests of a protocol redirect route (stub: being built).
type Redirect struct{}
