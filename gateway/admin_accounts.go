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
	ID       string   `json:"id"`
	Name     string   `json:"name"`
	Disabled bool     `json:"disabled"`
	Admin    bool     `json:"admin"`
	Groups   []string `json:"groups"`
	// QuotaBytes is 0 when the user has no quota.
	QuotaBytes int64 `json:"quota_bytes"`
	// UsedBytes is what counts against the quota (Repo.QuotaUsed), shown
	// with or without one so an admin can size a quota before setting it.
	UsedBytes int64     `json:"used_bytes"`
	Created   time.Time `json:"created_at"`
	// SignInBlockedUntil is set while password sign-ins as this name are
	// refused after repeated failures (see model.SignInLimits).
	SignInBlockedUntil *time.Time `json:"sign_in_blocked_until,omitempty"`
}

// userOut is u as the API shows it; used is Repo.QuotaUsed's answer,
// asked for before a change is applied so that a failure to count cannot
// turn a change that was made into an error answer.
func (ad *admin) userOut(ctx context.Context, u *model.User, used int64, blocks map[string]time.Time) userJSON {
	sub := policy.User(u.Name)
	roles := ad.pol.RolesOf(sub)
	if roles == nil {
		roles = []string{}
	}
	out := userJSON{ID: u.ID, Name: u.Name, Disabled: u.Disabled, Created: u.CreatedAt, Groups: roles,
		QuotaBytes: u.QuotaBytes, UsedBytes: used,
		Admin: ad.pol.Decide(ctx, sub, policy.ActAdmin, policy.AnyObject).Allowed}
	account, _ := model.SignInKeys(u.Name, "")
	if until, ok := blocks[account]; ok {
		out.SignInBlockedUntil = &until
	}
	return out
}

// listUsers serves GET /api/v1/users: every account, whether it is an
// admin, the groups and roles it is in, and its quota and usage.
func (ad *admin) listUsers(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	us, err := ad.s.repo.Users(ctx)
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	blocks, err := ad.s.repo.SignInBlocks(ctx, time.Now())
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	out := make([]userJSON, 0, len(us))
	for _, u := range us {
		used, err := ad.s.repo.QuotaUsed(ctx, u.ID)
		if err != nil {
			ad.fail(w, r, err, nil)
			return
		}
		out = append(out, ad.userOut(ctx, u, used, blocks))
	}
	adminJSON(w, http.StatusOK, struct {
		Users []userJSON `json:"users"`
	}{out})
}

// userAndUsage reads the account named name, the bytes that count
// against its quota, and the sign-in blocks in force.
func (ad *admin) userAndUsage(ctx context.Context, name string) (*model.User, int64, map[string]time.Time, error) {
	u, err := ad.s.repo.UserByName(ctx, name)
	if err != nil {
		return nil, 0, nil, err
	}
	used, err := ad.s.repo.QuotaUsed(ctx, u.ID)
	if err != nil {
		return nil, 0, nil, err
	}
	blocks, err := ad.s.repo.SignInBlocks(ctx, time.Now())
	if err != nil {
		return nil, 0, nil, err
	}
	return u, used, blocks, nil
}

// getUser serves GET /api/v1/users/{name}: one account as listUsers
// shows it, for a script that watches one user's usage.
func (ad *admin) getUser(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	u, used, blocks, err := ad.userAndUsage(ctx, r.PathValue("name"))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	adminJSON(w, http.StatusOK, ad.userOut(ctx, u, used, blocks))
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
	// A new account has created no files yet.
	ad.applied(w, auditErr, http.StatusCreated, ad.userOut(ctx, u, 0, nil))
}

// patchUser serves PATCH /api/v1/users/{name} {"disabled": bool,
// "quota_bytes": n}, either or both; null or absent leaves a field as it
// is, and a quota of 0 removes it. Disabling the last enabled admin is
// refused (409), and then the quota is not changed either; disabling ends
// the user's admin page sessions, and their password and keys stop
// working at the next request. The request leaves one audit row: a
// user.disable or user.enable when it carries "disabled", so that those
// rows alone tell who switched accounts off and on, else a user.quota;
// its before and after hold the fields the request sent.
func (ad *admin) patchUser(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Disabled   *bool  `json:"disabled"`
		QuotaBytes *int64 `json:"quota_bytes"`
		Unblock    bool   `json:"unblock"`
	}
	if err := decodeJSON(w, r, 16<<10, &in); err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	if in.Disabled == nil && in.QuotaBytes == nil && !in.Unblock {
		ad.fail(w, r, badRequest(`nothing to change: send {"disabled": true|false}, {"quota_bytes": n} and/or {"unblock": true}`), nil)
		return
	}
	// Checked here as well as by SetQuota, so that nothing is applied
	// from a request that is refused.
	if in.QuotaBytes != nil && *in.QuotaBytes < 0 {
		ad.fail(w, r, badRequest("quota_bytes cannot be negative (0 removes the quota)"), nil)
		return
	}
	ctx := r.Context()
	ad.mu.Lock()
	defer ad.mu.Unlock()
	u, used, blocks, err := ad.userAndUsage(ctx, r.PathValue("name"))
	if err != nil {
		ad.fail(w, r, err, nil)
		return
	}
	sub := policy.User(u.Name)
	if in.Disabled != nil && *in.Disabled && !u.Disabled {
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
	before, after := map[string]any{}, map[string]any{}
	action := "user.quota"
	// A step that fails leaves the earlier ones applied; they are audited
	// all the same, so that the trail never misses a change that was made.
	fail := func(err error) {
		if len(after) > 0 {
			ad.record(ctx, r, action, sub, true, auditDetail{Before: before, After: after})
		}
		ad.fail(w, r, err, nil)
	}
	if in.Unblock {
		account, _ := model.SignInKeys(u.Name, "")
		if err := ad.s.repo.SignInSucceeded(ctx, account); err != nil {
			fail(err)
			return
		}
		if in.QuotaBytes == nil {
			action = "user.unblock" // else user.quota, or user.disable/enable, names the row
		}
		if until, ok := blocks[account]; ok {
			before["sign_in_blocked_until"] = until
		}
		after["sign_in_blocked_until"] = nil
		delete(blocks, account)
	}
	if in.QuotaBytes != nil {
		if err := ad.s.repo.SetQuota(ctx, u.Name, *in.QuotaBytes); err != nil {
			fail(err)
			return
		}
		before["quota_bytes"], after["quota_bytes"] = u.QuotaBytes, *in.QuotaBytes
		u.QuotaBytes = *in.QuotaBytes
	}
	if in.Disabled != nil {
		if err := ad.s.repo.SetDisabled(ctx, u.Name, *in.Disabled); err != nil {
			fail(err)
			return
		}
		action = "user.enable"
		if *in.Disabled {
			action = "user.disable"
		}
		before["disabled"], after["disabled"] = u.Disabled, *in.Disabled
		u.Disabled = *in.Disabled
		if *in.Disabled {
			if err := ad.endSessions(ctx, u.ID); err != nil {
				fail(err)
				return
			}
		}
	}
	auditErr := ad.record(ctx, r, action, sub, true, auditDetail{Before: before, After: after})
	ad.applied(w, auditErr, http.StatusOK, ad.userOut(ctx, u, used, blocks))
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
