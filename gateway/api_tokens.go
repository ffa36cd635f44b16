package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/uptrace/bun"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// tokenJSON is a token as the API shows it. Token (the credential) is only
// ever set in the answer that created it.
type tokenJSON struct {
	ID                string     `json:"id"`
	Token             string     `json:"token,omitempty"`
	AccessLevel       string     `json:"accessLevel"`
	CreatorID         string     `json:"creatorId"`
	CreationTimestamp time.Time  `json:"creationTimestamp"`
	ExpiresAt         *time.Time `json:"expiresAt"`
}

func toTokenJSON(t *model.FileToken, credential string) tokenJSON {
	return tokenJSON{ID: t.ID, Token: credential, AccessLevel: t.Level, CreatorID: t.CreatedBy,
		CreationTimestamp: t.CreatedAt, ExpiresAt: t.ExpiresAt}
}

// tokenFile loads the file of a token request and checks share (full
// access), answering and returning nil otherwise. Tokens exist for files
// only.
func (a *api) tokenFile(w http.ResponseWriter, r *http.Request) *model.Node {
	n := a.node(w, r)
	if n == nil || !a.allow(w, r, n, policy.ActShare) {
		return nil
	}
	if n.IsDir {
		writeJSONError(w, http.StatusConflict, "conflict", "Tokens are for files, not folders; grant access to a folder instead.")
		return nil
	}
	return n
}

// listTokens serves GET /api/v1/files/{id}/tokens: the tokens without
// their secrets, which are never stored.
func (a *api) listTokens(w http.ResponseWriter, r *http.Request) {
	n := a.tokenFile(w, r)
	if n == nil {
		return
	}
	ts, err := a.s.repo.Tokens(r.Context(), n.ID)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	out := make([]tokenJSON, 0, len(ts))
	for _, t := range ts {
		out = append(out, toTokenJSON(t, ""))
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out})
}

// createToken serves POST /api/v1/files/{id}/tokens {accessLevel,
// expiresIn | expiresAt}: a new token, whose credential is shown in this
// answer only.
func (a *api) createToken(w http.ResponseWriter, r *http.Request) {
	var b struct {
		AccessLevel string          `json:"accessLevel"`
		ExpiresIn   json.RawMessage `json:"expiresIn"`
		ExpiresAt   *time.Time      `json:"expiresAt"`
	}
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	n := a.tokenFile(w, r)
	if n == nil {
		return
	}
	if b.AccessLevel != model.LevelFull && b.AccessLevel != model.LevelRead {
		apiBadRequest(w, "invalid", `accessLevel must be "full" or "read".`)
		return
	}
	expires, err := tokenExpiry(b.ExpiresIn, b.ExpiresAt)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if n.Archived() {
		a.s.writeError(w, r, model.ErrNotFound)
		return
	}
	tok, cred, err := a.mintToken(r.Context(), n, b.AccessLevel, PrincipalFrom(r.Context()).ActorID(), expires)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, toTokenJSON(tok, cred))
}

func tokenExpiry(in json.RawMessage, at *time.Time) (*time.Time, error) {
	switch {
	case len(in) > 0 && string(in) != "null" && at != nil:
		return nil, fmt.Errorf("%w: give expiresIn or expiresAt, not both", model.ErrInvalid)
	case at != nil:
		if !at.After(time.Now()) {
			return nil, fmt.Errorf("%w: expiresAt is in the past", model.ErrInvalid)
		}
		t := at.UTC().Truncate(time.Microsecond)
		return &t, nil
	case len(in) > 0 && string(in) != "null":
		d, err := parseDuration(in)
		if err != nil {
			return nil, err
		}
		t := time.Now().Add(d).UTC().Truncate(time.Microsecond)
		return &t, nil
	}
	return nil, nil
}

// deleteToken serves DELETE /api/v1/files/{id}/tokens/{tokenId}. The row
// and its grant go in one transaction; the repository refuses (409) to
// remove the last full token, under a row lock, so two concurrent deletes
// of the last two full tokens leave one.
func (a *api) deleteToken(w http.ResponseWriter, r *http.Request) {
	n := a.tokenFile(w, r)
	if n == nil {
		return
	}
	var commit func()
	err := a.s.repo.InTx(r.Context(), func(ctx context.Context, tx bun.Tx) error {
		t, err := a.s.repo.DeleteToken(ctx, tx, n.ID, r.PathValue("tokenId"))
		if err != nil {
			return err
		}
		commit, err = a.pol.ApplyTx(ctx, tx, policy.Change{Remove: [][]string{
			policy.Grant(policy.Token(t.ID), policy.Level(t.Level), n.ID)}})
		return err
	})
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	commit()
	w.WriteHeader(http.StatusNoContent)
}
