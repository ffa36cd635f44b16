package gateway

import (
	"net/http"
	"time"

	"github.com/filegate/filegate/model"
	"github.com/filegate/filegate/policy"
)

// settingsJSON is the files settings document of the API.
type settingsJSON struct {
	DisableForceDownloadForMimeTypes []string   `json:"disableForceDownloadForMimeTypes"`
	AllowPublicPHI                   bool       `json:"allowPublicPhi"`
	MaxLinkSeconds                   int64      `json:"maxLinkSeconds"`
	UpdateTimestamp                  *time.Time `json:"updateTimestamp"`
	Warnings                         []string   `json:"warnings,omitempty"`
}

func toSettingsJSON(fs model.FileSettings) settingsJSON {
	out := settingsJSON{DisableForceDownloadForMimeTypes: fs.DisableForceDownloadForMimeTypes,
		AllowPublicPHI: fs.AllowPublicPHI, MaxLinkSeconds: fs.MaxLinkSeconds}
	if !fs.UpdatedAt.IsZero() {
		t := fs.UpdatedAt
		out.UpdateTimestamp = &t
	}
	for _, t := range fs.DisableForceDownloadForMimeTypes {
		if t == "*/*" {
			out.Warnings = append(out.Warnings, `"*/*" lets browsers render every stored file, including HTML and SVG that can run scripts; list only the types you need.`)
		}
	}
	if fs.AllowPublicPHI {
		out.Warnings = append(out.Warnings, "Files flagged phi may be made public.")
	}
	return out
}

// getSettings serves GET /api/v1/settings/files to admins.
func (a *api) getSettings(w http.ResponseWriter, r *http.Request) {
	if !a.allow(w, r, nil, policy.ActAdmin) {
		return
	}
	fs, err := a.s.repo.FileSettings(r.Context())
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSettingsJSON(fs))
}

// putSettings serves PUT /api/v1/settings/files to admins. Fields left
// out keep their value; "*/*" is accepted with a warning in the answer.
func (a *api) putSettings(w http.ResponseWriter, r *http.Request) {
	var b struct {
		DisableForceDownloadForMimeTypes *[]string `json:"disableForceDownloadForMimeTypes"`
		AllowPublicPHI                   *bool     `json:"allowPublicPhi"`
		MaxLinkSeconds                   *int64    `json:"maxLinkSeconds"`
		UpdateTimestamp                  any       `json:"updateTimestamp"` // ignored: set by the server
	}
	if err := readJSON(r, &b); err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if !a.allow(w, r, nil, policy.ActAdmin) {
		return
	}
	fs, err := a.s.repo.FileSettings(r.Context())
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	if b.DisableForceDownloadForMimeTypes != nil {
		fs.DisableForceDownloadForMimeTypes = *b.DisableForceDownloadForMimeTypes
	}
	if b.AllowPublicPHI != nil {
		fs.AllowPublicPHI = *b.AllowPublicPHI
	}
	if b.MaxLinkSeconds != nil {
		fs.MaxLinkSeconds = *b.MaxLinkSeconds
	}
	saved, err := a.s.repo.SetFileSettings(r.Context(), fs)
	if err != nil {
		a.s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, toSettingsJSON(saved))
}
