package policy

import "slices"

// RolesOf returns the groups and roles sub belongs to, directly or through
// other groups, nearest first, read from memory. It leaves out sub itself
// and the implicit Anyone. Admin tools show it next to a decision, because
// a denial is explained by the links a subject lacks.
func (a *Authorizer) RolesOf(sub string) []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	all := a.st.groups.closure(sub, nil)
	return slices.DeleteFunc(slices.Clone(all[1:]), func(s string) bool { return s == Anyone })
}

// MembersOf returns the subjects that belong to role (a group or a role),
// directly or through nested groups, read from memory, in breadth-first
// order and at most limit of them (limit <= 0 means all). What-if uses it
// to find whom a change to a group's rules reaches.
func (a *Authorizer) MembersOf(role string, limit int) []string {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return membersOf(a.st, role, limit)
}

func membersOf(st *state, role string, limit int) []string {
	var out []string
	seen := map[string]bool{role: true}
	frontier := []string{role}
	for depth := 0; depth < maxHierarchy && len(frontier) > 0; depth++ {
		var next []string
		for _, r := range frontier {
			for _, m := range st.groups.users[r] {
				if seen[m] {
					continue
				}
				seen[m] = true
				out = append(out, m)
				if limit > 0 && len(out) >= limit {
					return out
				}
				next = append(next, m)
			}
		}
		frontier = next
	}
	return out
}
