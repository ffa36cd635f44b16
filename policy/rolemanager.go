package policy

import (
	"errors"
	"slices"

	"github.com/casbin/casbin/v2/log"
	"github.com/casbin/casbin/v2/rbac"
)

// memberships holds the g links (user -> group, user -> role:admin, group
// -> group). It implements rbac.RoleManager so a generic Casbin enforcer
// of the model can use it as its "g" role manager; it knows that every
// subject is implicitly Anyone. It is not safe for concurrent mutation.
type memberships struct {
	roles map[string][]string // member -> direct roles
	users map[string][]string // role -> direct members
}

var _ rbac.RoleManager = (*memberships)(nil)

func newMemberships() *memberships {
	return &memberships{roles: map[string][]string{}, users: map[string][]string{}}
}

func (m *memberships) add(member, role string) {
	if !slices.Contains(m.roles[member], role) {
		m.roles[member] = append(m.roles[member], role)
		m.users[role] = append(m.users[role], member)
	}
}

func (m *memberships) remove(member, role string) {
	drop := func(idx map[string][]string, k, v string) {
		if l := slices.DeleteFunc(idx[k], func(s string) bool { return s == v }); len(l) > 0 {
			idx[k] = l
		} else {
			delete(idx, k)
		}
	}
	drop(m.roles, member, role)
	drop(m.users, role, member)
}

// closure appends sub, its transitive roles (breadth first, at most
// maxHierarchy links away) and Anyone to buf. With a caller's stack array
// as buf it does not allocate for ordinary subjects.
func (m *memberships) closure(sub string, buf []string) []string {
	buf = append(buf, sub)
	start := 0
	for depth := 0; depth < maxHierarchy && start < len(buf); depth++ {
		end := len(buf)
		for _, s := range buf[start:end] {
			for _, r := range m.roles[s] {
				if !slices.Contains(buf, r) {
					buf = append(buf, r)
				}
			}
		}
		start = end
	}
	if !slices.Contains(buf, Anyone) {
		buf = append(buf, Anyone)
	}
	return buf
}

// path returns the g links of a shortest chain from sub to role, or nil.
func (m *memberships) path(sub, role string) [][]string {
	parent := map[string]string{sub: ""}
	frontier := []string{sub}
	for depth := 0; depth < maxHierarchy && len(frontier) > 0; depth++ {
		var next []string
		for _, s := range frontier {
			for _, r := range m.roles[s] {
				if _, seen := parent[r]; seen {
					continue
				}
				parent[r] = s
				if r == role {
					var out [][]string
					for c := r; c != sub; c = parent[c] {
						out = append(out, []string{"g", parent[c], c})
					}
					slices.Reverse(out)
					return out
				}
				next = append(next, r)
			}
		}
		frontier = next
	}
	return nil
}

// Clear removes every link.
func (m *memberships) Clear() error {
	clear(m.roles)
	clear(m.users)
	return nil
}

// AddLink makes name1 a member of name2; domains are not used by g.
func (m *memberships) AddLink(name1, name2 string, _ ...string) error {
	m.add(name1, name2)
	return nil
}

// BuildRelationship is deprecated in Casbin and does nothing.
func (m *memberships) BuildRelationship(string, string, ...string) error { return nil }

// DeleteLink removes the membership of name1 in name2.
func (m *memberships) DeleteLink(name1, name2 string, _ ...string) error {
	m.remove(name1, name2)
	return nil
}

// HasLink reports whether name1 is name2, is in name2 through a chain of
// memberships, or name2 is Anyone.
func (m *memberships) HasLink(name1, name2 string, _ ...string) (bool, error) {
	if name1 == name2 || name2 == Anyone {
		return true, nil
	}
	var buf [16]string
	return slices.Contains(m.closure(name1, buf[:0]), name2), nil
}

// GetRoles returns the direct roles of name.
func (m *memberships) GetRoles(name string, _ ...string) ([]string, error) {
	return slices.Clone(m.roles[name]), nil
}

// GetUsers returns the direct members of name.
func (m *memberships) GetUsers(name string, _ ...string) ([]string, error) {
	return slices.Clone(m.users[name]), nil
}

// GetImplicitRoles returns the transitive roles of name, without name
// itself and without the implicit Anyone.
func (m *memberships) GetImplicitRoles(name string, _ ...string) ([]string, error) {
	all := m.closure(name, nil)
	return slices.DeleteFunc(all[1:], func(s string) bool { return s == Anyone }), nil
}

// GetImplicitUsers returns the transitive members of name.
func (m *memberships) GetImplicitUsers(name string, _ ...string) ([]string, error) {
	var out []string
	frontier := []string{name}
	for depth := 0; depth < maxHierarchy && len(frontier) > 0; depth++ {
		var next []string
		for _, r := range frontier {
			for _, u := range m.users[r] {
				if u != name && !slices.Contains(out, u) {
					out = append(out, u)
					next = append(next, u)
				}
			}
		}
		frontier = next
	}
	return out, nil
}

// errNoDomains answers the domain queries g has no use for.
var errNoDomains = errors.New("policy: g links have no domains")

// GetDomains is not supported: g links have no domains.
func (m *memberships) GetDomains(string) ([]string, error) { return nil, errNoDomains }

// GetAllDomains is not supported: g links have no domains.
func (m *memberships) GetAllDomains() ([]string, error) { return nil, errNoDomains }

// PrintRoles does nothing; use the policy listing instead.
func (m *memberships) PrintRoles() error { return nil }

// SetLogger does nothing; the package logs through slog.
func (m *memberships) SetLogger(log.Logger) {}

// Match compares names exactly; patterns are not part of the model.
func (m *memberships) Match(str, pattern string) bool { return str == pattern }

// AddMatchingFunc is ignored: the model uses exact names.
func (m *memberships) AddMatchingFunc(string, rbac.MatchingFunc) {}

// AddDomainMatchingFunc is ignored: the model uses exact names.
func (m *memberships) AddDomainMatchingFunc(string, rbac.MatchingFunc) {}

// DeleteDomain is not supported: g links have no domains.
func (m *memberships) DeleteDomain(string) error { return errNoDomains }

// grantIndex holds the g2 links (subject, level, node) as one map from
// (node, subject) to a set of levels. Casbin's domain role manager keeps a
// role graph per domain, which for one grant per file means one graph per
// file; this index keeps one small map entry per grant and answers "which
// levels does s hold on node d" with one probe. It implements
// rbac.RoleManager for a generic Casbin enforcer's "g2". Levels do not
// inherit from each other. It is not safe for concurrent mutation.
type grantIndex struct {
	links map[pair]levelMask
}

var _ rbac.RoleManager = (*grantIndex)(nil)

func newGrantIndex() *grantIndex {
	return &grantIndex{links: map[pair]levelMask{}}
}

func (g *grantIndex) add(sub, level, node string) {
	g.links[pair{node, sub}] |= levelBit(level)
}

func (g *grantIndex) remove(sub, level, node string) {
	k := pair{node, sub}
	if lv := g.links[k] &^ levelBit(level); lv != 0 {
		g.links[k] = lv
	} else {
		delete(g.links, k)
	}
}

// has reports a stored link only; unlike HasLink it is false for
// sub == level, which matters to granted.
func (g *grantIndex) has(sub, level, node string) bool {
	bit := levelBit(level)
	return bit != 0 && g.links[pair{node, sub}]&bit != 0
}

func levelsOf(lv levelMask) []string {
	var out []string
	for i, l := range levels {
		if lv&(1<<i) != 0 {
			out = append(out, l)
		}
	}
	return out
}

func domainOf(domain []string) string {
	if len(domain) == 0 {
		return ""
	}
	return domain[0]
}

// Clear removes every grant.
func (g *grantIndex) Clear() error {
	clear(g.links)
	return nil
}

// AddLink grants level name2 to name1 on the node domain[0].
func (g *grantIndex) AddLink(name1, name2 string, domain ...string) error {
	g.add(name1, name2, domainOf(domain))
	return nil
}

// BuildRelationship is deprecated in Casbin and does nothing.
func (g *grantIndex) BuildRelationship(string, string, ...string) error { return nil }

// DeleteLink revokes level name2 of name1 on the node domain[0].
func (g *grantIndex) DeleteLink(name1, name2 string, domain ...string) error {
	g.remove(name1, name2, domainOf(domain))
	return nil
}

// HasLink follows Casbin's convention that a name links to itself, and
// otherwise reports a stored grant.
func (g *grantIndex) HasLink(name1, name2 string, domain ...string) (bool, error) {
	return name1 == name2 || g.has(name1, name2, domainOf(domain)), nil
}

// GetRoles returns the levels name holds on the node domain[0].
func (g *grantIndex) GetRoles(name string, domain ...string) ([]string, error) {
	return levelsOf(g.links[pair{domainOf(domain), name}]), nil
}

// GetUsers returns who holds level name on the node domain[0]. It scans
// every grant; decisions never call it.
func (g *grantIndex) GetUsers(name string, domain ...string) ([]string, error) {
	bit, d := levelBit(name), domainOf(domain)
	var out []string
	for k, lv := range g.links {
		if k.a == d && lv&bit != 0 {
			out = append(out, k.b)
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetImplicitRoles equals GetRoles: levels do not inherit.
func (g *grantIndex) GetImplicitRoles(name string, domain ...string) ([]string, error) {
	return g.GetRoles(name, domain...)
}

// GetImplicitUsers equals GetUsers: levels do not inherit.
func (g *grantIndex) GetImplicitUsers(name string, domain ...string) ([]string, error) {
	return g.GetUsers(name, domain...)
}

// GetDomains returns the nodes name holds a grant on. It scans every
// grant.
func (g *grantIndex) GetDomains(name string) ([]string, error) {
	var out []string
	for k := range g.links {
		if k.b == name {
			out = append(out, k.a)
		}
	}
	slices.Sort(out)
	return out, nil
}

// GetAllDomains returns every node that has a grant. It scans every grant.
func (g *grantIndex) GetAllDomains() ([]string, error) {
	seen := map[string]struct{}{}
	for k := range g.links {
		seen[k.a] = struct{}{}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	slices.Sort(out)
	return out, nil
}

// PrintRoles does nothing; use the policy listing instead.
func (g *grantIndex) PrintRoles() error { return nil }

// SetLogger does nothing; the package logs through slog.
func (g *grantIndex) SetLogger(log.Logger) {}

// Match compares names exactly; patterns are not part of the model.
func (g *grantIndex) Match(str, pattern string) bool { return str == pattern }

// AddMatchingFunc is ignored: the model uses exact names.
func (g *grantIndex) AddMatchingFunc(string, rbac.MatchingFunc) {}

// AddDomainMatchingFunc is ignored: grants are inherited through the
// lineage by granted, not by domain patterns.
func (g *grantIndex) AddDomainMatchingFunc(string, rbac.MatchingFunc) {}

// DeleteDomain removes every grant on the node domain.
func (g *grantIndex) DeleteDomain(domain string) error {
	for k := range g.links {
		if k.a == domain {
			delete(g.links, k)
		}
	}
	return nil
}
