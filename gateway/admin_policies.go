package gateway

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// Limits of the policy endpoints.
const (
	maxBatchLines  = 10_000
	maxBatchBytes  = 4 << 20
	maxListedRules = 10_000
)

// filterJSON is a policy.Filter in JSON.
type filterJSON struct {
	Ptype  string   `json:"ptype"`
	Values []string `json:"values"`
}

// changeJSON is a batch of policy edits in JSON: lines are arrays, ptype
// first, e.g. ["g2", "group:staff", "level:read", "/reports"]. A node
// field (a p line's object, a g2 line's node) may be a path starting with
// "/", which is resolved to the node's id before anything else happens.
type changeJSON struct {
	Add            [][]string   `json:"add,omitempty"`
	Remove         [][]string   `json:"remove,omitempty"`
	RemoveMatching []filterJSON `json:"removeMatching,omitempty"`
}

type batchJSON struct {
	changeJSON
	// Force applies a change the guardrails call risky (public or
	// store-wide access). It never removes the last admin.
	Force bool `json:"force,omitempty"`
}

func (c changeJSON) change() policy.Change {
	ch := policy.Change{Add: c.Add, Remove: c.Remove}
	for _, f := range c.RemoveMatching {
		ch.RemoveMatching = append(ch.RemoveMatching, policy.Filter{Ptype: f.Ptype, Values: f.Values})
	}
	return ch
}

func changeOut(ch policy.Change) *changeJSON {
	c := &changeJSON{Add: ch.Add, Remove: ch.Remove}
	for _, f := range ch.RemoveMatching {
		c.RemoveMatching = append(c.RemoveMatching, filterJSON{f.Ptype, f.Values})
	}
	return c
}

// decodeBatch reads a batch, resolves paths to node ids and validates
// every line against the model, so that an invalid batch is refused
// whole, before anything is looked at or applied.
func (ad *admin) decodeBatch(w http.ResponseWriter, r *http.Request) (policy.Change, bool, error) {
	var b batchJSON
	if err := decodeJSON(w, r, maxBatchBytes, &b); err != nil {
		return policy.Change{}, false, err
	}
	if r.URL.Query().Get("force") == "true" {
		b.Force = true
	}
	ch := b.change()
	if n := len(ch.Add) + len(ch.Remove) + len(ch.RemoveMatching); n == 0 {
		return ch, false, badRequest("the batch is empty")
	} else if n > maxBatchLines {
		return ch, false, badRequest("a batch holds at most %d lines, this one %d", maxBatchLines, n)
	}
	if err := ad.resolveLines(r.Context(), ch.Add, "add"); err != nil {
		return ch, false, err
	}
	if err := ad.resolveLines(r.Context(), ch.Remove, "remove"); err != nil {
		return ch, false, err
	}
	return ch, b.Force, nil
}

// resolveLines replaces paths in node fields by node ids, in place, and
// validates each line.
func (ad *admin) resolveLines(ctx context.Context, lines [][]string, what string) error {
	for i, l := range lines {
		if k := nodeField(l); k > 0 && strings.HasPrefix(l[k], "/") {
			n, err := ad.nodeAt(ctx, l[k])
			if err != nil {
				return err
			}
			l[k] = n.ID
		}
		if err := policy.Validate(l); err != nil {
			return badRequest("%s[%d] %q: %v", what, i, l, err)
		}
	}
	return nil
}

// nodeField is the index of the node id in a line (p object, g2 node), or
// 0 when the line has none.
func nodeField(l []string) int {
	switch {
	case len(l) == 4 && l[0] == "p" && l[2] != policy.AnyObject:
		return 2
	case len(l) == 4 && l[0] == "g2":
		return 3
	}
	return 0
}

// nodeAt resolves a path to its live node; an unknown path is a bad
// request, not a 404 of the endpoint.
func (ad *admin) nodeAt(ctx context.Context, path string) (*model.Node, error) {
	clean, err := model.CleanPath(path)
	if err != nil {
		return nil, badRequest("%q is not a valid path", path)
	}
	n, err := ad.s.repo.LiveByPath(ctx, clean)
	if errors.Is(err, model.ErrNotFound) {
		return nil, badRequest("no file or folder at %q", clean)
	}
	return n, err
}

// enabledUsers returns the subjects of the accounts that can sign in, the
// ones the last-admin guardrail counts.
func (ad *admin) enabledUsers(ctx context.Context) ([]string, error) {
	us, err := ad.s.repo.Users(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, u := range us {
		if !u.Disabled {
			out = append(out, policy.User(u.Name))
		}
	}
	return out, nil
}

// guard brings memory up to the database (another instance may have just
// changed the policy) and checks ch against the guardrails. The caller
// holds ad.mu.
func (ad *admin) guard(ctx context.Context, ch policy.Change, force bool) ([]policy.Risk, error) {
	if err := ad.pol.Sync(ctx); err != nil {
		return nil, err
	}
	users, err := ad.enabledUsers(ctx)
	if err != nil {
		return nil, err
	}
	return ad.pol.Guard(ctx, ch, policy.GuardOptions{Users: users, RootID: model.RootID, Force: force})
}

// touched returns the stored state of the lines a change touches: which
// of them exist now (before) and which will once it is applied (after).
// RemoveMatching filters are expanded into the lines they match now.
func (ad *admin) touched(ctx context.Context, ch policy.Change) (before, after [][]string, err error) {
	removed := slices.Clone(ch.Remove)
	for _, f := range ch.RemoveMatching {
		lines, err := ad.pol.Rules(ctx, f)
		if err != nil {
			return nil, nil, err
		}
		removed = append(removed, lines...)
	}
	stored := map[string]map[string]bool{} // ptype+v0 -> line keys stored
	has := func(l []string) (bool, error) {
		k := l[0] + "\x00" + l[1]
		set, ok := stored[k]
		if !ok {
			lines, err := ad.pol.Rules(ctx, policy.Filter{Ptype: l[0], Values: []string{l[1]}})
			if err != nil {
				return false, err
			}
			set = map[string]bool{}
			for _, s := range lines {
				set[strings.Join(s, "\x00")] = true
			}
			stored[k] = set
		}
		return set[strings.Join(l, "\x00")], nil
	}
	seen := map[string]bool{}
	builtin := map[string]bool{}
	for _, b := range policy.Builtin() {
		builtin[strings.Join(b, "\x00")] = true
	}
	added := map[string]bool{}
	for _, l := range ch.Add {
		added[strings.Join(l, "\x00")] = true
	}
	for _, l := range slices.Concat(removed, ch.Add) {
		k := strings.Join(l, "\x00")
		if seen[k] {
			continue
		}
		seen[k] = true
		ok, err := has(l)
		if err != nil {
			return nil, nil, err
		}
		if ok {
			before = append(before, l)
		}
		if added[k] || (ok && builtin[k]) {
			after = append(after, l)
		}
	}
	return before, after, nil
}

// change checks ch against the guardrails, applies it and audits it with
// the lines' state before and after. Refusals are audited too.
func (ad *admin) change(w http.ResponseWriter, r *http.Request, ch policy.Change, force bool, action, object string) {
	ctx := r.Context()
	ad.mu.Lock()
	defer ad.mu.Unlock()
	risks, err := ad.guard(ctx, ch, force)
	if err != nil {
		if errors.Is(err, policy.ErrUnsafe) || errors.Is(err, policy.ErrLastAdmin) {
			ad.record(ctx, r, action, object, false, auditDetail{Change: changeOut(ch), Reason: err.Error()})
		}
		ad.fail(w, r, err, risks)
		return
	}
	before, after, err := ad.touched(ctx, ch)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	if err := ad.pol.Apply(ctx, ch); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	auditErr := ad.record(ctx, r, action, object, true,
		auditDetail{Change: changeOut(ch), Before: nonNil(before), After: nonNil(after), Risks: risks})
	ad.applied(w, auditErr, http.StatusOK, struct {
		Revision int64         `json:"revision"`
		Change   *changeJSON   `json:"change"`
		Before   [][]string    `json:"before"`
		After    [][]string    `json:"after"`
		Risks    []policy.Risk `json:"forced_risks,omitempty"`
	}{ad.pol.Revision(), changeOut(ch), nonNil(before), nonNil(after), risks})
}

func nonNil(lines [][]string) [][]string {
	if lines == nil {
		return [][]string{}
	}
	return lines
}

// applyBatch serves POST /api/v1/policies: a batch of additions and
// removals, validated whole (400, nothing applied), checked against the
// guardrails (409) and applied atomically.
func (ad *admin) applyBatch(w http.ResponseWriter, r *http.Request) {
	ch, force, err := ad.decodeBatch(w, r)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	ad.change(w, r, ch, force, "policy.change", "policy")
}

type ruleJSON struct {
	Line    []string `json:"line"`
	Builtin bool     `json:"builtin,omitempty"`
}

// listPolicies serves GET /api/v1/policies?ptype=&v0=&v1=&v2=&limit=&offset=:
// the stored lines matching the filter (memberships are ptype g), with
// the paths of the nodes they name.
func (ad *admin) listPolicies(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := policy.Filter{Ptype: q.Get("ptype")}
	for i := range 3 {
		f.Values = append(f.Values, q.Get("v"+strconv.Itoa(i)))
	}
	for len(f.Values) > 0 && f.Values[len(f.Values)-1] == "" {
		f.Values = f.Values[:len(f.Values)-1]
	}
	limit, offset := 1000, 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxListedRules {
			ad.fail(w, r, badRequest("limit must be 1 to %d", maxListedRules), nil)
			return
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			ad.fail(w, r, badRequest("offset must be a non-negative number"), nil)
			return
		}
		offset = n
	}
	ctx := r.Context()
	lines, err := ad.pol.Rules(ctx, f)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	total := len(lines)
	lines = lines[min(offset, total):min(offset+limit, total)]
	builtin := policy.Builtin()
	out := struct {
		Total    int               `json:"total"`
		Revision int64             `json:"revision"`
		Rules    []ruleJSON        `json:"rules"`
		Paths    map[string]string `json:"paths"`
	}{Total: total, Revision: ad.pol.Revision(), Rules: make([]ruleJSON, 0, len(lines)), Paths: map[string]string{}}
	for _, l := range lines {
		out.Rules = append(out.Rules, ruleJSON{Line: l, Builtin: slices.ContainsFunc(builtin, func(b []string) bool { return slices.Equal(b, l) })})
		if k := nodeField(l); k > 0 {
			out.Paths[l[k]] = ""
		}
	}
	if err := ad.pathsOf(ctx, out.Paths); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	adminJSON(w, http.StatusOK, out)
}

// pathsOf fills ids' paths; a node that no longer exists keeps "".
func (ad *admin) pathsOf(ctx context.Context, paths map[string]string) error {
	for id := range paths {
		n, err := ad.s.repo.NodeByID(ctx, id)
		switch {
		case errors.Is(err, model.ErrNotFound):
		case err != nil:
			return err
		case n.Archived():
			paths[id] = n.Path + " (archived)"
		default:
			paths[id] = n.Path
		}
	}
	return nil
}

// exportPolicies serves GET /api/v1/policies/export: every stored line in
// Casbin's CSV format, streamed.
func (ad *admin) exportPolicies(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="filegate-policy.csv"`)
	if err := ad.pol.ExportCSV(r.Context(), w); err != nil {
		// Headers may be out already; all that is left is to log and cut
		// the response short.
		ad.s.logger(r.Context()).Error("policy export failed", "err", err)
		panic(http.ErrAbortHandler)
	}
}
