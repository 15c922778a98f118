package edge

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/viper"
)

// envKeys are the config keys that TLSEDGE_<KEY> environment variables may
// override (TLSEDGE_LOG_LEVEL=debug sets log.level).
var envKeys = []string{"log.level", "log.format", "log.access", "admin.address"}

// LoadFile reads, decodes, defaults and validates the config at path. On any
// problem it returns a *Problems listing every one of them, one a line, each
// naming the file and the key.
func LoadFile(path string) (*Config, error) {
	cfg, _, err := loadFile(path, false)
	return cfg, err
}

// loadFile is LoadFile; for a reload (reload true), expired certificates
// are returned as warnings instead of refusing the file.
func loadFile(path string, reload bool) (*Config, []Problem, error) {
	ps := &Problems{File: path, reload: reload}
	v := viper.New()
	v.SetConfigFile(path)
	switch strings.ToLower(filepath.Ext(path)) {
	case ".yaml", ".yml", ".json", ".toml":
	default:
		v.SetConfigType("yaml")
	}
	v.SetEnvPrefix("TLSEDGE")
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	for _, k := range envKeys {
		_ = v.BindEnv(k)
	}
	if err := v.ReadInConfig(); err != nil {
		var perr *os.PathError
		switch {
		case errors.As(err, &perr):
			ps.Add("", "cannot read the config file: %v", perr.Err)
		default:
			ps.Add("", "cannot parse the config file: %v", err)
		}
		return nil, nil, ps
	}
	cfg := &Config{File: path}
	if b, err := os.ReadFile(path); err == nil {
		sum := sha256.Sum256(b)
		cfg.Hash = hex.EncodeToString(sum[:])
	}
	// Validate even when some values did not decode: a value that failed
	// keeps its zero (and so its default), and the user sees every problem
	// of the file in one go.
	decode(v.AllSettings(), cfg, ps)
	applyDefaults(cfg)
	validate(cfg, ps)
	if err := ps.Err(); err != nil {
		return nil, ps.Warnings, err
	}
	return cfg, ps.Warnings, nil
}

// resolve makes a path from the config relative to the config file's folder.
func (c *Config) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) || c.File == "" {
		return p
	}
	return filepath.Join(filepath.Dir(c.File), p)
}

// backend returns the backend config named name, or nil.
func (c *Config) backend(name string) *BackendConfig {
	for i := range c.Backends {
		if c.Backends[i].Name == name {
			return &c.Backends[i]
		}
	}
	return nil
}

// storage is certs.storage resolved against the config's folder; empty
// means tlsedge's folder under the user's data directory
// ($XDG_DATA_HOME/tlsedge or ~/.local/share/tlsedge). With neither
// XDG_DATA_HOME nor HOME set it is "" (never a shared temporary folder):
// ACME then refuses to start (certs.Manager.PrepareACME).
func (c *Config) storage() string {
	if c.Certs.Storage != "" {
		return c.resolve(c.Certs.Storage)
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "tlsedge")
	}
	if h, err := os.UserHomeDir(); err == nil && h != "" {
		return filepath.Join(h, ".local", "share", "tlsedge")
	}
	return ""
}
