package edge

import (
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"
)

// reloadHistoryLen is how many reloads GET /api/v1/reloads keeps.
const reloadHistoryLen = 20

// ReloadRecord is one reload in GET /api/v1/reloads, newest first.
type ReloadRecord struct {
	Time    time.Time `json:"time"`
	Trigger string    `json:"trigger"` // SIGHUP | file changed | certificate files changed | admin API
	Result  string    `json:"result"`  // success | refused
	Hash    string    `json:"hash,omitempty"`
	// Problems are why a refused reload was refused (at most 10).
	Problems []string `json:"problems,omitempty"`
}

// reloadHistory is the last reloads, oldest first.
type reloadHistory struct {
	mu   sync.Mutex
	list []ReloadRecord
}

// add records the outcome of one reload: sum on success, err on refusal.
func (h *reloadHistory) add(trigger string, sum *ReloadSummary, err error) {
	r := ReloadRecord{Time: time.Now().UTC(), Trigger: trigger, Result: "success"}
	if err != nil {
		r.Result = "refused"
		var ps *Problems
		if errors.As(err, &ps) {
			for _, p := range ps.List {
				r.Problems = append(r.Problems, p.Path+": "+p.Msg)
			}
		} else {
			r.Problems = []string{err.Error()}
		}
		if len(r.Problems) > 10 {
			r.Problems = r.Problems[:10]
		}
	} else if sum != nil {
		r.Hash = sum.Hash
	}
	h.mu.Lock()
	h.list = append(h.list, r)
	if len(h.list) > reloadHistoryLen {
		h.list = slices.Delete(h.list, 0, len(h.list)-reloadHistoryLen)
	}
	h.mu.Unlock()
}

// newest returns the records, newest first.
func (h *reloadHistory) newest() []ReloadRecord {
	h.mu.Lock()
	out := slices.Clone(h.list)
	h.mu.Unlock()
	slices.Reverse(out)
	if out == nil {
		out = []ReloadRecord{}
	}
	return out
}

func (e *Edge) handleReloads(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"reloads": e.reloads.newest()})
}
