package gateway

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// maxImportBytes caps a CSV import; a policy with 110,000 lines is about
// 5 MB.
const maxImportBytes = 64 << 20

// knownActions are the actions explain and what-if ask about.
var knownActions = []string{
	policy.ActStat, policy.ActRead, policy.ActWrite, policy.ActDelete, policy.ActShare,
	policy.ActAdmin, policy.ActViewFiles,
}

// objectOf turns what an admin names into the authorizer's object: "*",
// a path ("/reports"), a lineage ("root/ab12") or a node id. It returns
// the object and the node, nil for "*".
func (ad *admin) objectOf(ctx context.Context, name string) (string, *model.Node, error) {
	switch {
	case name == "" || name == policy.AnyObject:
		return policy.AnyObject, nil, nil
	case strings.HasPrefix(name, "/"):
		n, err := ad.nodeAt(ctx, name)
		if err != nil {
			return "", nil, err
		}
		return n.Lineage, n, nil
	}
	id := name
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		id = name[i+1:]
	}
	n, err := ad.s.repo.NodeByID(ctx, id)
	if errors.Is(err, model.ErrNotFound) {
		return "", nil, badRequest("no node with id %q", id)
	}
	if err != nil {
		return "", nil, err
	}
	return n.Lineage, n, nil
}

// subjectOf accepts "user:alice", "token:…", "anonymous" or a bare user
// name.
func subjectOf(s string) (string, error) {
	switch {
	case s == "":
		return "", badRequest("subject is required")
	case s == policy.Anonymous || strings.Contains(s, ":"):
		return s, nil
	}
	if err := model.ValidAccountName(s); err != nil {
		return "", badRequest("subject %q is neither user:, token:, anonymous nor a user name", s)
	}
	return policy.User(s), nil
}

type explainJSON struct {
	Subject string     `json:"subject"`
	Action  string     `json:"action"`
	Object  string     `json:"object"`
	Path    string     `json:"path,omitempty"`
	Allowed bool       `json:"allowed"`
	Rule    []string   `json:"rule"`
	Via     [][]string `json:"via"`
	// Roles are the subject's groups and roles: for a denial, they show
	// which links exist and so which are missing.
	Roles []string `json:"roles"`
}

// explain serves GET /api/v1/policies/explain?subject=&action=&object=:
// the decision, the rule that allowed it and the memberships and grant it
// applied through.
func (ad *admin) explain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	ctx := r.Context()
	sub, err := subjectOf(strings.TrimSpace(q.Get("subject")))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	act := q.Get("action")
	if !slices.Contains(knownActions, act) {
		ad.fail(w, r, badRequest("action must be one of %s", strings.Join(knownActions, ", ")), nil)
		return
	}
	obj, n, err := ad.objectOf(ctx, strings.TrimSpace(q.Get("object")))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	d := ad.pol.Explain(ctx, sub, act, obj)
	out := explainJSON{Subject: sub, Action: act, Object: obj, Allowed: d.Allowed, Rule: d.Rule,
		Via: nonNil(d.Via), Roles: ad.pol.RolesOf(sub)}
	if n != nil {
		out.Path = n.Path
	}
	if out.Roles == nil {
		out.Roles = []string{}
	}
	adminJSON(w, http.StatusOK, out)
}

// importPolicies serves POST /api/v1/policies/import?replace=&force=: a
// Casbin CSV file. Every line is validated first (400 naming the line,
// nothing stored), then the import is checked against the guardrails like
// any batch, then stored in one transaction.
func (ad *admin) importPolicies(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	replace, force := r.URL.Query().Get("replace") == "true", r.URL.Query().Get("force") == "true"
	lines, err := readPolicyCSV(http.MaxBytesReader(w, r.Body, maxImportBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			err = fmt.Errorf("%w: an import holds at most %d bytes", model.ErrTooLarge, int64(maxImportBytes))
		}
		ad.fail(w, r, err, nil)
		return
	}
	ad.mu.Lock()
	defer ad.mu.Unlock()
	if err := ad.pol.Sync(ctx); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	current, err := ad.pol.Rules(ctx, policy.Filter{})
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	// The import as a change: what it adds, and with replace what it drops.
	ch := diffLines(current, lines, replace)
	object := "policy"
	if replace {
		object = "policy (replace)"
	}
	risks, err := ad.guard(ctx, ch, force)
	if err != nil {
		if errors.Is(err, policy.ErrUnsafe) || errors.Is(err, policy.ErrLastAdmin) {
			ad.record(ctx, r, "policy.import", object, false, auditDetail{Reason: err.Error(),
				Before: summary(ch.Remove, len(current)), After: summary(ch.Add, 0)})
		}
		ad.fail(w, r, err, risks)
		return
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writePolicyCSV(pw, lines)) }()
	n, err := ad.pol.ImportCSV(ctx, pr, replace)
	pr.Close()
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	after := len(current) + len(ch.Add) - len(ch.Remove)
	auditErr := ad.record(ctx, r, "policy.import", object, true, auditDetail{
		Before: summary(ch.Remove, len(current)), After: summary(ch.Add, after), Risks: risks})
	ad.applied(w, auditErr, http.StatusOK, struct {
		Read     int   `json:"read"`
		Added    int   `json:"added"`
		Removed  int   `json:"removed"`
		Revision int64 `json:"revision"`
	}{n, len(ch.Add), len(ch.Remove), ad.pol.Revision()})
}

// auditSummaryLines bounds the lines an import's audit row lists.
const auditSummaryLines = 1000

// lineSummary describes one side of an import in the audit trail: the
// number of stored rules, and the lines that went (before) or came
// (after), all of them up to auditSummaryLines.
type lineSummary struct {
	Rules     int        `json:"rules"`
	Lines     [][]string `json:"lines"`
	Changed   int        `json:"changed"`
	Truncated bool       `json:"truncated,omitempty"`
}

func summary(lines [][]string, rules int) lineSummary {
	s := lineSummary{Rules: rules, Lines: nonNil(lines), Changed: len(lines)}
	if len(lines) > auditSummaryLines {
		s.Lines, s.Truncated = lines[:auditSummaryLines], true
	}
	return s
}

// diffLines is the change that turns current into current+lines, or with
// replace into lines (the built-in rules stay either way).
func diffLines(current, lines [][]string, replace bool) policy.Change {
	key := func(l []string) string { return strings.Join(l, "\x00") }
	have := make(map[string]bool, len(current))
	for _, l := range current {
		have[key(l)] = true
	}
	want := make(map[string]bool, len(lines))
	var ch policy.Change
	for _, l := range lines {
		k := key(l)
		if !have[k] && !want[k] {
			ch.Add = append(ch.Add, l)
		}
		want[k] = true
	}
	if replace {
		for _, b := range policy.Builtin() {
			want[key(b)] = true
		}
		for _, l := range current {
			if !want[key(l)] {
				ch.Remove = append(ch.Remove, l)
			}
		}
	}
	return ch
}

// readPolicyCSV parses Casbin's policy format as policy.ImportCSV does and
// validates every line, naming the first bad one.
func readPolicyCSV(r io.Reader) ([][]string, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	cr.FieldsPerRecord = -1
	var out [][]string
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			return nil, badRequest("%v", err)
		}
		if err != nil {
			return nil, err
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if err := policy.Validate(rec); err != nil {
			line, _ := cr.FieldPos(0)
			return nil, badRequest("line %d: %v", line, err)
		}
		out = append(out, rec)
	}
}

// writePolicyCSV writes validated lines, which never need quoting.
func writePolicyCSV(w io.Writer, lines [][]string) error {
	for _, l := range lines {
		if _, err := io.WriteString(w, strings.Join(l, ", ")+"\n"); err != nil {
			return err
		}
	}
	return nil
}
