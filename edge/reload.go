package edge

import (
	"errors"
	"sync"
)

// ReloadSummary says what a reload put in force.
type ReloadSummary struct {
	Config    string `json:"config"`
	Hash      string `json:"hash"`
	Changed   bool   `json:"changed"` // the file differs from the one in force before
	Trigger   string `json:"trigger"`
	Listeners int    `json:"listeners"`
	Routes    int    `json:"routes"`
	Backends  int    `json:"backends"`
	Servers   int    `json:"servers"`
}

var reloadFileMu sync.Mutex // one file reload at a time (SIGHUP, file watch, API)

// ReloadFile reads the config file in force again and reloads it. A bad
// file, or one that cannot be put in force, is logged problem by problem,
// counted as refused, and the running config keeps serving; the error is a
// *Problems for a bad file. trigger ("SIGHUP", "file changed", "admin API")
// goes to the log.
func (e *Edge) ReloadFile(trigger string) (sum *ReloadSummary, err error) {
	reloadFileMu.Lock()
	defer reloadFileMu.Unlock()
	defer func() { e.reloads.add(trigger, sum, err) }()
	old := e.Config()
	if old == nil || old.File == "" {
		return nil, errors.New("edge: no config file to reload")
	}
	path := old.File
	cfg, warnings, err := loadFile(path, true)
	for _, w := range warnings {
		e.log.Warn().Str("config", path).Str("key", w.Path).Str("problem", w.Msg).Msg("reload: certificate expired (served as before; replace it)")
	}
	if err == nil {
		err = e.Reload(cfg)
	} else {
		e.m.reloaded(false)
	}
	if err != nil {
		var ps *Problems
		if errors.As(err, &ps) {
			for _, p := range ps.List {
				e.log.Error().Str("config", path).Str("key", p.Path).Str("problem", p.Msg).Msg("reload refused: config problem")
			}
		} else {
			e.log.Error().Err(err).Str("config", path).Msg("reload refused")
		}
		e.log.Warn().Str("config", path).Str("trigger", trigger).Msg("old config keeps serving")
		return nil, err
	}
	sum = &ReloadSummary{Config: path, Hash: cfg.Hash, Changed: cfg.Hash != old.Hash, Trigger: trigger,
		Listeners: len(cfg.Listeners), Backends: len(cfg.Backends)}
	for _, l := range cfg.Listeners {
		sum.Routes += len(l.Routes)
	}
	for _, b := range cfg.Backends {
		sum.Servers += len(b.Servers)
	}
	e.log.Info().Str("config", path).Str("trigger", trigger).Str("hash", cfg.Hash).Msg("config reloaded")
	return sum, nil
}
