package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// grantJSON is one grant on a file or folder: exactly one of User and
// Group, or Public for the "anyone" grant of a public file.
type grantJSON struct {
	User   string `json:"user,omitempty"`
	Group  string `json:"group,omitempty"`
	Public bool   `json:"public,omitempty"`
	Level  string `json:"level"`
	NodeID string `json:"nodeId"`
}

// subject turns the request's user or group into a Casbin subject after
// checking that the account exists. It returns model.ErrInvalid and
// model.ErrNotFound.
func (a *api) grantSubject(r *http.Request, g grantJSON) (string, error) {
	switch {
	case (g.User == "") == (g.Group == ""):
		return "", fmt.Errorf("%w: give user or group", model.ErrInvalid)
	case g.User != "":
		if _, err := a.s.repo.UserByName(r.Context(), g.User); err != nil {
			return "", err
		}
		return policy.User(g.User), nil
	}
	if _, err := a.s.repo.GroupByName(r.Context(), g.Group); err != nil {
		return "", err
	}
	return policy.Group(g.Group), nil
}

func validLevel(l string) bool {
	return l == model.LevelMetadata || l == model.LevelRead || l == model.LevelFull
}

// addGrant serves POST /api/v1/files/{id}/grants {user|group, level}: a g2
// line, inherited by everything below a folder. Tokens are managed through
// their own endpoints, not as grants.
func (a *api) addGrant(w http.ResponseWriter, r *http.Request) {
	var b grantJSON
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return
	}
	if !validLevel(b.Level) {
		apiBadRequest(w, "invalid", `level must be "metadata", "read" or "full".`)
		return
	}
	sub, err := a.grantSubject(r, b)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if err := a.pol.Apply(r.Context(), policy.Change{Add: [][]string{policy.Grant(sub, policy.Level(b.Level), n.ID)}}); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	b.NodeID = n.ID
	writeJSON(w, http.StatusCreated, b)
}

// removeGrant serves DELETE /api/v1/files/{id}/grants with user or group
// and an optional level (as query parameters or a JSON body); without a
// level every level of that account on the node goes.
func (a *api) removeGrant(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	b := grantJSON{User: q.Get("user"), Group: q.Get("group"), Level: q.Get("level")}
	if b.User == "" && b.Group == "" {
		if err := readJSON(r, &b); err != nil {
			a.s.writeError(w, r, err)
			return
		}
	}
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return
	}
	if (b.User == "") == (b.Group == "") {
		apiBadRequest(w, "invalid", "Give user or group.")
		return
	}
	sub := policy.User(b.User)
	if b.Group != "" {
		sub = policy.Group(b.Group)
	}
	var ch policy.Change
	switch {
	case b.Level == "":
		ch.RemoveMatching = []policy.Filter{{Ptype: "g2", Values: []string{sub, "", n.ID}}}
	case validLevel(b.Level):
		ch.Remove = [][]string{policy.Grant(sub, policy.Level(b.Level), n.ID)}
	default:
		apiBadRequest(w, "invalid", `level must be "metadata", "read" or "full".`)
		return
	}
	if err := a.pol.Apply(r.Context(), ch); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listGrants serves GET /api/v1/files/{id}/grants: the user, group and
// public grants made on this node itself (not inherited ones, not tokens).
func (a *api) listGrants(w http.ResponseWriter, r *http.Request) {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return
	}
	lines, err := a.pol.Rules(r.Context(), policy.Filter{Ptype: "g2", Values: []string{"", "", n.ID}})
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	out := []grantJSON{}
	for _, l := range lines {
		g := grantJSON{Level: strings.TrimPrefix(l[2], "level:"), NodeID: n.ID}
		switch {
		case strings.HasPrefix(l[1], "user:"):
			g.User = strings.TrimPrefix(l[1], "user:")
		case strings.HasPrefix(l[1], "group:"):
			g.Group = strings.TrimPrefix(l[1], "group:")
		case l[1] == policy.Anyone:
			g.Public = true
		default:
			continue
		}
		out = append(out, g)
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

// setPublic serves PUT /api/v1/files/{id}/public {public}: the grant
// "anyone may read", which reaches anonymous callers. It is refused (409)
// for a phi file, or a folder holding one, unless the files settings
// allow public PHI.
func (a *api) setPublic(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Public *bool `json:"public"`
	}
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return
	}
	if b.Public == nil {
		apiBadRequest(w, "invalid", "Give public: true or false.")
		return
	}
	line := policy.Grant(policy.Anyone, policy.LevelRead, n.ID)
	ch := policy.Change{Remove: [][]string{line}}
	if *b.Public {
		if err := a.checkPublicPHI(r, n); err != nil {
			a.writeAPIError(w, r, err)
			return
		}
		ch = policy.Change{Add: [][]string{line}}
	}
	if err := a.pol.Apply(r.Context(), ch); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": n.ID, "public": *b.Public})
}

// checkPublicPHI returns errPHIPublic when n is, or (for a folder) holds,
// a phi file and the settings do not allow public PHI.
func (a *api) checkPublicPHI(r *http.Request, n *model.Node) error {
	phi := n.PHI
	if n.IsDir {
		found, err := a.s.repo.SearchNodes(r.Context(), model.Search{Within: []string{n.Lineage}, Where: "n.phi = ?",
			Args: []any{true}, Limit: 1})
		if err != nil {
			return err
		}
		phi = len(found) > 0
	}
	if !phi {
		return nil
	}
	return a.publicPHIAllowed(r)
}
