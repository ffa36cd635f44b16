package gateway

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// Bounds of a what-if sample: subjects x objects x actions queries at most,
// each a map probe or two, so a preview stays in milliseconds.
const (
	whatIfSubjects = 100
	whatIfObjects  = 100
	whatIfChildren = 5
)

// nodeActs and globalActs are what is asked about a node and about "*".
var (
	nodeActs   = []string{policy.ActStat, policy.ActRead, policy.ActWrite, policy.ActDelete, policy.ActShare}
	globalActs = []string{policy.ActAdmin, policy.ActViewFiles}
)

// sampleSet is the requests a what-if decides: real subjects and real
// nodes from the store, chosen from what the batch touches.
type sampleSet struct {
	subjects  []string
	objects   []string          // lineages, and "*"
	paths     map[string]string // lineage -> path
	seenSub   map[string]bool
	truncated bool
}

func (s *sampleSet) addSubject(sub string) {
	if s.seenSub[sub] {
		return
	}
	if len(s.subjects) >= whatIfSubjects {
		s.truncated = true
		return
	}
	s.seenSub[sub] = true
	s.subjects = append(s.subjects, sub)
}

func (s *sampleSet) addObject(lineage, path string) {
	if _, ok := s.paths[lineage]; ok {
		return
	}
	if len(s.objects) >= whatIfObjects {
		s.truncated = true
		return
	}
	s.paths[lineage] = path
	s.objects = append(s.objects, lineage)
}

func (s *sampleSet) queries() []policy.Query {
	var qs []policy.Query
	for _, sub := range s.subjects {
		for _, obj := range s.objects {
			acts := nodeActs
			if obj == policy.AnyObject {
				acts = globalActs
			}
			for _, act := range acts {
				qs = append(qs, policy.Query{Subject: sub, Action: act, Object: obj})
			}
		}
	}
	return qs
}

// sample picks the subjects and objects a change can affect: the
// requesters among the subjects its lines name (groups and roles expanded
// into their members, anyone into anonymous and some users), and the
// nodes its lines name (for a membership, the nodes the group holds rules
// or grants on) with their ancestors and first children, plus "*", the
// root and the root's first children.
func (ad *admin) sample(ctx context.Context, ch policy.Change) (*sampleSet, error) {
	s := &sampleSet{paths: map[string]string{}, seenSub: map[string]bool{}}
	lines := append(append([][]string{}, ch.Add...), ch.Remove...)
	for _, f := range ch.RemoveMatching {
		matched, err := ad.pol.Rules(ctx, f)
		if err != nil {
			return nil, err
		}
		lines = append(lines, matched...)
	}
	var principals, nodes []string
	for _, l := range lines {
		principals = append(principals, l[1])
		switch {
		case l[0] == "g":
			// A membership gives the member whatever the role holds.
			for _, role := range append([]string{l[2]}, ad.pol.RolesOf(l[2])...) {
				held, err := ad.heldBy(ctx, role)
				if err != nil {
					return nil, err
				}
				nodes = append(nodes, held...)
			}
		case nodeField(l) > 0:
			nodes = append(nodes, l[nodeField(l)])
		}
	}
	var users []string // loaded once, for anyone and the levels
	for _, p := range principals {
		switch {
		case p == policy.Anonymous || strings.HasPrefix(p, "user:") || strings.HasPrefix(p, "token:"):
			s.addSubject(p)
		case strings.HasPrefix(p, "group:") || strings.HasPrefix(p, "role:"):
			for _, m := range ad.pol.MembersOf(p, 10*whatIfSubjects) {
				if m == policy.Anonymous || strings.HasPrefix(m, "user:") || strings.HasPrefix(m, "token:") {
					s.addSubject(m)
				}
			}
		default: // anyone, or a level's definition: everybody
			if p == policy.Anyone {
				s.addSubject(policy.Anonymous)
			}
			if users == nil {
				us, err := ad.s.repo.Users(ctx)
				if err != nil {
					return nil, err
				}
				users = []string{}
				for _, u := range us {
					users = append(users, policy.User(u.Name))
				}
			}
			for _, u := range users[:min(len(users), whatIfSubjects/2)] {
				s.addSubject(u)
			}
		}
	}
	s.addObject(policy.AnyObject, "*")
	for _, id := range nodes {
		if err := ad.sampleAround(ctx, s, id); err != nil {
			return nil, err
		}
	}
	// Rules on "*" reach every node: the top of the tree stands for them.
	if err := ad.sampleAround(ctx, s, model.RootID); err != nil {
		return nil, err
	}
	return s, nil
}

// heldBy returns the nodes a group or role has direct rules or grants on.
func (ad *admin) heldBy(ctx context.Context, role string) ([]string, error) {
	var out []string
	for _, ptype := range []string{"p", "g2"} {
		lines, err := ad.pol.Rules(ctx, policy.Filter{Ptype: ptype, Values: []string{role}})
		if err != nil {
			return nil, err
		}
		for _, l := range lines {
			if k := nodeField(l); k > 0 {
				out = append(out, l[k])
			}
		}
	}
	return out, nil
}

// sampleAround adds a node, its ancestors and its first children. Nodes
// that do not exist (a rule on a purged node) are skipped: no request can
// name them.
func (ad *admin) sampleAround(ctx context.Context, s *sampleSet, id string) error {
	n, err := ad.s.repo.NodeByID(ctx, id)
	if errors.Is(err, model.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	ids := strings.Split(n.Lineage, "/")
	for i := range ids[:len(ids)-1] {
		lineage := strings.Join(ids[:i+1], "/")
		if _, ok := s.paths[lineage]; ok {
			continue
		}
		anc, err := ad.s.repo.NodeByID(ctx, ids[i])
		if err != nil && !errors.Is(err, model.ErrNotFound) {
			return err
		}
		if anc != nil {
			s.addObject(lineage, anc.Path)
		}
	}
	s.addObject(n.Lineage, n.Path)
	if !n.IsDir {
		return nil
	}
	kids, err := ad.s.repo.Children(ctx, n.ID, model.ListOptions{Limit: whatIfChildren})
	if err != nil {
		return err
	}
	for _, k := range kids {
		s.addObject(k.Lineage, k.Path)
	}
	return nil
}

type decisionJSON struct {
	Allowed bool     `json:"allowed"`
	Rule    []string `json:"rule"`
}

type diffJSON struct {
	Subject string       `json:"subject"`
	Action  string       `json:"action"`
	Object  string       `json:"object"`
	Path    string       `json:"path"`
	Before  decisionJSON `json:"before"`
	After   decisionJSON `json:"after"`
}

type refusalJSON struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Risks   []policy.Risk `json:"risks,omitempty"`
}

// whatIf serves POST /api/v1/policies/what-if: without applying the batch,
// the decisions over a bounded sample of real subjects and nodes that it
// would turn around, and whether the guardrails would refuse it.
func (ad *admin) whatIf(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	ch, force, err := ad.decodeBatch(w, r)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	s, err := ad.sample(ctx, ch)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	qs := s.queries()
	diffs, err := ad.pol.WhatIf(ctx, ch, qs)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	out := struct {
		Change  *changeJSON  `json:"change"`
		Diffs   []diffJSON   `json:"diffs"`
		Refusal *refusalJSON `json:"refusal"`
		Sample  struct {
			Subjects  []string `json:"subjects"`
			Objects   []string `json:"objects"`
			Queries   int      `json:"queries"`
			Truncated bool     `json:"truncated"`
		} `json:"sample"`
	}{Change: changeOut(ch), Diffs: make([]diffJSON, 0, len(diffs))}
	for _, d := range diffs {
		out.Diffs = append(out.Diffs, diffJSON{Subject: d.Subject, Action: d.Action, Object: d.Object,
			Path: s.paths[d.Object], Before: decisionJSON{d.Before.Allowed, d.Before.Rule},
			After: decisionJSON{d.After.Allowed, d.After.Rule}})
	}
	out.Sample.Subjects, out.Sample.Queries, out.Sample.Truncated = s.subjects, len(qs), s.truncated
	for _, o := range s.objects {
		out.Sample.Objects = append(out.Sample.Objects, s.paths[o])
	}
	if out.Sample.Subjects == nil {
		out.Sample.Subjects = []string{}
	}
	risks, err := ad.guard(ctx, ch, force)
	switch {
	case errors.Is(err, policy.ErrUnsafe):
		out.Refusal = &refusalJSON{"unsafe", err.Error() + ". Apply with force to go ahead.", risks}
	case errors.Is(err, policy.ErrLastAdmin):
		out.Refusal = &refusalJSON{"last_admin", err.Error() + ".", nil}
	case err != nil:
		ad.fail(w, r, err, nil)
		return
	}
	adminJSON(w, http.StatusOK, out)
}
