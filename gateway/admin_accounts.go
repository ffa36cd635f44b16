package gateway

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

type userJSON struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Disabled bool      `json:"disabled"`
	Admin    bool      `json:"admin"`
	Groups   []string  `json:"groups"`
	Created  time.Time `json:"created_at"`
}

func (ad *admin) userOut(ctx context.Context, u *model.User) userJSON {
	sub := policy.User(u.Name)
	roles := ad.pol.RolesOf(sub)
	if roles == nil {
		roles = []string{}
	}
	return userJSON{ID: u.ID, Name: u.Name, Disabled: u.Disabled, Created: u.CreatedAt, Groups: roles,
		Admin: ad.pol.Decide(ctx, sub, policy.ActAdmin, policy.AnyObject).Allowed}
}

// listUsers serves GET /api/v1/users: every account, whether it is an
// admin and the groups and roles it is in.
func (ad *admin) listUsers(w http.ResponseWriter, r *http.Request) {
	us, err := ad.s.repo.Users(r.Context())
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	out := make([]userJSON, 0, len(us))
	for _, u := range us {
		out = append(out, ad.userOut(r.Context(), u))
	}
	adminJSON(w, http.StatusOK, struct {
		Users []userJSON `json:"users"`
	}{out})
}

// createUser serves POST /api/v1/users {"name", "password", "admin"}. An
// empty password makes an account that only signs in with API keys.
func (ad *admin) createUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Admin    bool   `json:"admin"`
	}
	if err := decodeJSON(w, r, 16<<10, &in); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	if in.Password != "" && len(in.Password) < 8 {
		ad.fail(w, r, badRequest("the password must have at least 8 characters"), nil)
		return
	}
	ctx := r.Context()
	u, err := ad.s.repo.CreateUser(ctx, in.Name, in.Password)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	var ch *changeJSON
	if in.Admin {
		c := policy.Change{Add: [][]string{policy.Membership(policy.User(u.Name), policy.AdminRole)}}
		if err := ad.pol.Apply(ctx, c); err != nil {
			ad.fail(w, r, err, nil)
			return
		}
		ch = changeOut(c)
	}
	auditErr := ad.record(ctx, r, "user.create", policy.User(u.Name), true, auditDetail{Change: ch,
		After: map[string]any{"name": u.Name, "admin": in.Admin, "password": in.Password != ""}})
	ad.applied(w, auditErr, http.StatusCreated, ad.userOut(r.Context(), u))
}

// patchUser serves PATCH /api/v1/users/{name} {"disabled": bool}.
// Disabling the last enabled admin is refused (409); disabling ends the
// user's admin page sessions, and their password and keys stop working at
// the next request.
func (ad *admin) patchUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Disabled *bool `json:"disabled"`
	}
	if err := decodeJSON(w, r, 16<<10, &in); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	if in.Disabled == nil {
		ad.fail(w, r, badRequest(`nothing to change: send {"disabled": true|false}`), nil)
		return
	}
	ctx := r.Context()
	ad.mu.Lock()
	defer ad.mu.Unlock()
	u, err := ad.s.repo.UserByName(ctx, r.PathValue("name"))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	sub := policy.User(u.Name)
	if *in.Disabled && !u.Disabled {
		if err := ad.pol.Sync(ctx); err != nil {
			ad.fail(w, r, err, nil)
			return
		}
		users, err := ad.enabledUsers(ctx)
		if err != nil {
			ad.fail(w, r, err, nil)
			return
		}
		admins, _, err := ad.pol.Admins(ctx, policy.Change{}, users)
		if err != nil {
			ad.fail(w, r, err, nil)
			return
		}
		if slices.Equal(admins, []string{sub}) {
			ad.record(ctx, r, "user.disable", sub, false, auditDetail{Reason: policy.ErrLastAdmin.Error()})
			ad.fail(w, r, policy.ErrLastAdmin, nil)
			return
		}
	}
	if err := ad.s.repo.SetDisabled(ctx, u.Name, *in.Disabled); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	if *in.Disabled {
		if err := ad.endSessions(ctx, u.ID); err != nil {
			ad.fail(w, r, err, nil)
			return
		}
	}
	action := "user.enable"
	if *in.Disabled {
		action = "user.disable"
	}
	auditErr := ad.record(ctx, r, action, sub, true, auditDetail{
		Before: map[string]bool{"disabled": u.Disabled}, After: map[string]bool{"disabled": *in.Disabled}})
	u.Disabled = *in.Disabled
	ad.applied(w, auditErr, http.StatusOK, ad.userOut(r.Context(), u))
}

type groupJSON struct {
	Name        string   `json:"name"`
	Description string   `json:"description"`
	Members     []string `json:"members"`
	Created     string   `json:"created_at,omitempty"`
}

// listGroups serves GET /api/v1/groups: the groups with their direct
// members (g lines), including groups that only exist in the policy.
func (ad *admin) listGroups(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	gs, err := ad.s.repo.Groups(ctx)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	links, err := ad.pol.Rules(ctx, policy.Filter{Ptype: "g"})
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	byName := map[string]*groupJSON{}
	var out []*groupJSON
	for _, g := range gs {
		gj := &groupJSON{Name: g.Name, Description: g.Description, Members: []string{}, Created: g.CreatedAt.Format(time.RFC3339)}
		byName[policy.Group(g.Name)] = gj
		out = append(out, gj)
	}
	for _, l := range links {
		gj := byName[l[2]]
		if gj == nil {
			name, ok := strings.CutPrefix(l[2], "group:")
			if !ok {
				continue // role:admin is shown on the users
			}
			gj = &groupJSON{Name: name, Members: []string{}}
			byName[l[2]] = gj
			out = append(out, gj)
		}
		gj.Members = append(gj.Members, l[1])
	}
	adminJSON(w, http.StatusOK, struct {
		Groups []*groupJSON `json:"groups"`
	}{nonNilGroups(out)})
}

func nonNilGroups(gs []*groupJSON) []*groupJSON {
	if gs == nil {
		return []*groupJSON{}
	}
	return gs
}

// createGroup serves POST /api/v1/groups {"name", "description"}.
func (ad *admin) createGroup(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	}
	if err := decodeJSON(w, r, 16<<10, &in); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	ctx := r.Context()
	g, err := ad.s.repo.CreateGroup(ctx, in.Name, in.Description)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	auditErr := ad.record(ctx, r, "group.create", policy.Group(g.Name), true,
		auditDetail{After: map[string]string{"name": g.Name, "description": g.Description}})
	ad.applied(w, auditErr, http.StatusCreated, groupJSON{Name: g.Name, Description: g.Description,
		Members: []string{}, Created: g.CreatedAt.Format(time.RFC3339)})
}

// memberOf names a member: a bare name is a user, otherwise the subject
// as given (user:, group:, token:).
func memberOf(m string) string {
	if strings.Contains(m, ":") {
		return m
	}
	return policy.User(m)
}

// addMember serves POST /api/v1/groups/{name}/members {"member", "force"}
// through the same checks, application and audit as a policy batch.
func (ad *admin) addMember(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Member string `json:"member"`
		Force  bool   `json:"force"`
	}
	if err := decodeJSON(w, r, 16<<10, &in); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	ad.membership(w, r, in.Member, in.Force, true)
}

// removeMember serves DELETE /api/v1/groups/{name}/members/{member}.
func (ad *admin) removeMember(w http.ResponseWriter, r *http.Request) {
	ad.membership(w, r, r.PathValue("member"), false, false)
}

func (ad *admin) membership(w http.ResponseWriter, r *http.Request, member string, force, add bool) {
	ctx := r.Context()
	g, err := ad.s.repo.GroupByName(ctx, r.PathValue("name"))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	line := policy.Membership(memberOf(strings.TrimSpace(member)), policy.Group(g.Name))
	if err := policy.Validate(line); err != nil {
		ad.fail(w, r, badRequest("%q: %v", line, err), nil)
		return
	}
	ch, action := policy.Change{Add: [][]string{line}}, "group.add_member"
	if !add {
		ch, action = policy.Change{Remove: [][]string{line}}, "group.remove_member"
	}
	ad.change(w, r, ch, force, action, policy.Group(g.Name))
}
