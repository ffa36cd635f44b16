package policy

import (
	"slices"
	"strings"
)

// maxHierarchy bounds membership chains (user in group in group ...), the
// same limit Casbin's default role manager uses.
const maxHierarchy = 10

// pair keys the maps that replace Casbin's scan over p lines: (subject,
// node) for direct rules, (node, subject) for grants. Looking one up costs
// a hash of two short strings, whatever the number of stored lines.
type pair struct{ a, b string }

// pRule is one p line with its action parsed once.
type pRule struct {
	line []string
	mask actMask
}

// ruleSet holds the p lines of one subject on one object, and the union of
// their actions so that a miss costs one AND.
type ruleSet struct {
	mask  actMask
	rules []*pRule
}

func (rs *ruleSet) find(bit actMask) *pRule {
	for _, r := range rs.rules {
		if r.mask&bit != 0 {
			return r
		}
	}
	return nil
}

func (rs *ruleSet) add(r *pRule) {
	for _, old := range rs.rules {
		if old.line[3] == r.line[3] {
			return
		}
	}
	rs.rules = append(rs.rules, r)
	rs.mask |= r.mask
}

func (rs *ruleSet) remove(act string) {
	rs.rules = slices.DeleteFunc(rs.rules, func(r *pRule) bool { return r.line[3] == act })
	rs.mask = 0
	for _, r := range rs.rules {
		rs.mask |= r.mask
	}
}

// state is one in-memory copy of the policy, indexed for decisions. It is
// not synchronised; the Authorizer guards it.
type state struct {
	// rev is the policy revision the content reflects (plus the local
	// changes the Authorizer re-applies on top, see Authorizer.pending).
	rev     int64
	pGlobal map[string]*ruleSet // subject -> p lines with object "*"
	pNode   map[pair]*ruleSet   // (subject, node) -> p lines on that node
	groups  *memberships        // g
	grants  *grantIndex         // g2
}

func newState() *state {
	return &state{
		pGlobal: map[string]*ruleSet{},
		pNode:   map[pair]*ruleSet{},
		groups:  newMemberships(),
		grants:  newGrantIndex(),
	}
}

// add applies one validated line.
func (st *state) add(line []string) {
	switch line[0] {
	case "p":
		mask, _ := parseAction(line[3])
		r := &pRule{line: slices.Clone(line), mask: mask}
		var rs *ruleSet
		if line[2] == AnyObject {
			if rs = st.pGlobal[line[1]]; rs == nil {
				rs = &ruleSet{}
				st.pGlobal[line[1]] = rs
			}
		} else {
			k := pair{line[1], line[2]}
			if rs = st.pNode[k]; rs == nil {
				rs = &ruleSet{}
				st.pNode[k] = rs
			}
		}
		rs.add(r)
	case "g":
		st.groups.add(line[1], line[2])
	case "g2":
		st.grants.add(line[1], line[2], line[3])
	}
}

// remove undoes one line; removing a line that is not there is a no-op.
func (st *state) remove(line []string) {
	switch line[0] {
	case "p":
		if line[2] == AnyObject {
			if rs := st.pGlobal[line[1]]; rs != nil {
				if rs.remove(line[3]); len(rs.rules) == 0 {
					delete(st.pGlobal, line[1])
				}
			}
			return
		}
		k := pair{line[1], line[2]}
		if rs := st.pNode[k]; rs != nil {
			if rs.remove(line[3]); len(rs.rules) == 0 {
				delete(st.pNode, k)
			}
		}
	case "g":
		st.groups.remove(line[1], line[2])
	case "g2":
		st.grants.remove(line[1], line[2], line[3])
	}
}

// witness says why a request was allowed: the p line, the member of the
// subject's closure it applied through, and for a grant the level and the
// node (an ancestor-or-self of the object) the grant is on.
type witness struct {
	rule    *pRule
	subject string
	level   string
	domain  string
}

// validObject reports whether obj is "*" or a lineage of non-empty node
// ids.
func validObject(obj string) bool {
	if obj == AnyObject {
		return true
	}
	if obj == "" || obj[0] == '/' || obj[len(obj)-1] == '/' || strings.Contains(obj, "//") {
		return false
	}
	return !strings.Contains(obj, "*")
}

// requester reports whether sub may appear as a request's subject. Groups,
// roles and levels are only reached through links, never asked about
// directly: asking as "level:read" would otherwise match that level's own
// p line everywhere.
func requester(sub string) bool {
	switch kindOf(sub) {
	case kindUser, kindToken, kindAnonymous:
		return true
	}
	return false
}

// nextSegment returns the first id of a lineage and the rest after its
// slash.
func nextSegment(lineage string) (string, string) {
	if i := strings.IndexByte(lineage, '/'); i >= 0 {
		return lineage[:i], lineage[i+1:]
	}
	return lineage, ""
}

// decide evaluates the model's matcher without looking at any line that
// cannot apply:
//
//	actionMatch(r.act, p.act) &&
//	  ((g(r.sub, p.sub) && within(r.obj, p.obj)) || granted(r.sub, p.sub, r.obj))
//
// The first branch can only match p lines whose subject is in the
// requester's closure S (itself, its groups and roles, anyone) and whose
// object is "*" or a node of the lineage: |S| x (depth+1) map probes. The
// second can only match a level's p line through a g2 link from a member
// of S on a node of the lineage: |S| x depth probes. Neither depends on
// how many files, tokens or grants exist.
func (st *state) decide(sub, act, obj string) (witness, bool) {
	bit := actionBit(act)
	if bit == 0 || !requester(sub) || !validObject(obj) {
		return witness{}, false
	}
	var buf [16]string
	subs := st.groups.closure(sub, buf[:0])
	for _, s := range subs {
		if rs := st.pGlobal[s]; rs != nil && rs.mask&bit != 0 {
			return witness{rule: rs.find(bit), subject: s}, true
		}
	}
	if obj == AnyObject {
		return witness{}, false
	}
	if len(st.pNode) > 0 {
		for rest := obj; rest != ""; {
			var id string
			id, rest = nextSegment(rest)
			for _, s := range subs {
				if rs := st.pNode[pair{s, id}]; rs != nil && rs.mask&bit != 0 {
					return witness{rule: rs.find(bit), subject: s}, true
				}
			}
		}
	}
	if len(st.grants.links) > 0 {
		for rest := obj; rest != ""; {
			var id string
			id, rest = nextSegment(rest)
			for _, s := range subs {
				lv := st.grants.links[pair{id, s}]
				for i := 0; lv != 0; i, lv = i+1, lv>>1 {
					if lv&1 == 0 {
						continue
					}
					if rs := st.pGlobal[levels[i]]; rs != nil && rs.mask&bit != 0 {
						return witness{rule: rs.find(bit), subject: s, level: levels[i], domain: id}, true
					}
				}
			}
		}
	}
	return witness{}, false
}

// via lists the stored links behind a witness: the g chain from sub to the
// witness subject, then the g2 grant, if any. The implicit links (a
// subject is itself, and is anyone) are not stored and not listed.
func (st *state) via(sub string, w witness) [][]string {
	var out [][]string
	if w.subject != sub {
		out = st.groups.path(sub, w.subject)
	}
	if w.level != "" {
		out = append(out, []string{"g2", w.subject, w.level, w.domain})
	}
	return out
}
