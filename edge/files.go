package edge

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"os"
	"strings"
	"sync"

	"github.com/tlsedge/tlsedge/certs"
)

// configFiles holds each certificate, key, CA and CRL file a config names,
// read and parsed once: validate, the route keys and the build of one
// config share it, so they judge the same bytes (a file replaced between
// validate and build cannot put unchecked bytes in force) and a file that
// several routes name is read once. Results are by resolved path, errors
// included. A new config (a reload) reads the files again.
type configFiles struct {
	mu    sync.Mutex
	pairs map[string]filePair
	cas   map[string]fileCAs
	crls  map[string]fileCRLs
	raw   map[string]fileRaw
	reads int // files read from disk (tests count them)
}

type filePair struct {
	pair tls.Certificate
	err  error
}

type fileCAs struct {
	pool *x509.CertPool
	list []*x509.Certificate
	err  error
}

type fileCRLs struct {
	crls *certs.RevocationLists
	err  error
}

type fileRaw struct {
	b   []byte
	err error
}

var configFilesMu sync.Mutex // makes Config.files once

// fileCache returns c's cache of files, made on first use.
func (c *Config) fileCache() *configFiles {
	configFilesMu.Lock()
	defer configFilesMu.Unlock()
	if c.files == nil {
		c.files = &configFiles{pairs: map[string]filePair{}, cas: map[string]fileCAs{}, crls: map[string]fileCRLs{}, raw: map[string]fileRaw{}}
	}
	return c.files
}

// keyPair is tls.LoadX509KeyPair of the resolved cert and key files. The
// caller gets its own copy of the tls.Certificate (it may set OCSPStaple).
func (c *Config) keyPair(cert, key string) (tls.Certificate, error) {
	cert, key = c.resolve(cert), c.resolve(key)
	f := c.fileCache()
	f.mu.Lock()
	defer f.mu.Unlock()
	k := cert + "\x00" + key
	r, ok := f.pairs[k]
	if !ok {
		f.reads += 2
		r.pair, r.err = tls.LoadX509KeyPair(cert, key)
		f.pairs[k] = r
	}
	return r.pair, r.err
}

// caPool is certs.LoadCAPool of the resolved files. The pool is shared:
// callers must not add to it.
func (c *Config) caPool(files []string) (*x509.CertPool, []*x509.Certificate, error) {
	files = c.resolveAll(files)
	f := c.fileCache()
	f.mu.Lock()
	defer f.mu.Unlock()
	k := strings.Join(files, "\x00")
	r, ok := f.cas[k]
	if !ok {
		f.reads += len(files)
		r.pool, r.list, r.err = certs.LoadCAPool(files)
		f.cas[k] = r
	}
	return r.pool, r.list, r.err
}

// revocationLists is certs.LoadCRLs of the resolved files, checked against
// cas.
func (c *Config) revocationLists(files []string, cas []*x509.Certificate) (*certs.RevocationLists, error) {
	files = c.resolveAll(files)
	h := sha256.New()
	for _, ca := range cas {
		h.Write(ca.Raw)
	}
	k := strings.Join(files, "\x00") + "\x00" + string(h.Sum(nil))
	f := c.fileCache()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.crls[k]
	if !ok {
		f.reads += len(files)
		r.crls, r.err = certs.LoadCRLs(files, cas)
		f.crls[k] = r
	}
	return r.crls, r.err
}

// readFile is os.ReadFile of the resolved path. The bytes are shared:
// callers must not change them.
func (c *Config) readFile(path string) ([]byte, error) {
	path = c.resolve(path)
	f := c.fileCache()
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.raw[path]
	if !ok {
		f.reads++
		r.b, r.err = os.ReadFile(path)
		f.raw[path] = r
	}
	return r.b, r.err
}
