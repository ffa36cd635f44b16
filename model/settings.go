package model

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/uptrace/bun"
)

// settingRow is one named settings document.
type settingRow struct {
	bun.BaseModel `bun:"table:settings"`

	Name      string    `bun:"name,pk"`
	Value     string    `bun:"value"`
	UpdatedAt time.Time `bun:"updated_at"`
}

// FileSettings are the admin settings of the files API, stored as one JSON
// document named "files" so every instance sees the same values.
type FileSettings struct {
	// DisableForceDownloadForMimeTypes lists the MIME types ("image/png",
	// "image/*", or "*/*" for all) that are served inline; every other
	// type is sent as an attachment.
	DisableForceDownloadForMimeTypes []string `json:"disableForceDownloadForMimeTypes"`
	// AllowPublicPHI lets files flagged phi be made public.
	AllowPublicPHI bool `json:"allowPublicPhi"`
	// MaxLinkSeconds caps the lifetime of signed links; zero means the
	// server's configured maximum.
	MaxLinkSeconds int64 `json:"maxLinkSeconds"`
	// UpdatedAt is when the settings last changed; zero if never.
	UpdatedAt time.Time `json:"-"`
}

const fileSettingsName = "files"

// FileSettings returns the files API settings, or the defaults (nothing
// allow-listed) when none were ever saved. It returns ErrUnavailable.
func (r *Repo) FileSettings(ctx context.Context) (FileSettings, error) {
	var fs FileSettings
	row := new(settingRow)
	err := r.db.NewSelect().Model(row).Where("name = ?", fileSettingsName).Scan(ctx)
	if errors.Is(err, sql.ErrNoRows) {
		return FileSettings{DisableForceDownloadForMimeTypes: []string{}}, nil
	}
	if err != nil {
		return fs, dbErr(err)
	}
	if err := json.Unmarshal([]byte(row.Value), &fs); err != nil {
		return fs, fmt.Errorf("stored file settings: %w", err)
	}
	if fs.DisableForceDownloadForMimeTypes == nil {
		fs.DisableForceDownloadForMimeTypes = []string{}
	}
	fs.UpdatedAt = row.UpdatedAt
	return fs, nil
}

// SetFileSettings replaces the files API settings and returns them as
// stored. MIME types are lower-cased, stripped of parameters and
// de-duplicated. It returns ErrInvalid for a type that is not "type/sub"
// and for a negative link lifetime.
func (r *Repo) SetFileSettings(ctx context.Context, fs FileSettings) (FileSettings, error) {
	clean := make([]string, 0, len(fs.DisableForceDownloadForMimeTypes))
	seen := map[string]bool{}
	for _, t := range fs.DisableForceDownloadForMimeTypes {
		t = BaseMIME(t)
		typ, sub, ok := strings.Cut(t, "/")
		if !ok || typ == "" || sub == "" || strings.ContainsAny(t, " \t,;\"") || (typ == "*" && sub != "*") {
			return fs, fmt.Errorf("%w: %q is not a MIME type", ErrInvalid, t)
		}
		if !seen[t] {
			seen[t] = true
			clean = append(clean, t)
		}
	}
	if fs.MaxLinkSeconds < 0 {
		return fs, fmt.Errorf("%w: maxLinkSeconds must not be negative", ErrInvalid)
	}
	fs.DisableForceDownloadForMimeTypes = clean
	val, err := json.Marshal(fs)
	if err != nil {
		return fs, err
	}
	row := &settingRow{Name: fileSettingsName, Value: string(val), UpdatedAt: r.now()}
	_, err = r.db.NewInsert().Model(row).
		On("CONFLICT (name) DO UPDATE").Set("value = EXCLUDED.value").Set("updated_at = EXCLUDED.updated_at").
		Exec(ctx)
	if err != nil {
		return fs, dbErr(err)
	}
	fs.UpdatedAt = row.UpdatedAt
	return fs, nil
}

// BaseMIME returns a MIME type lower-cased and without parameters:
// "Text/HTML; charset=utf-8" gives "text/html".
func BaseMIME(t string) string {
	t, _, _ = strings.Cut(t, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// InlineAllowed reports whether mimeType is on the allow-list, exactly, by
// a "type/*" entry, or by "*/*".
func (fs FileSettings) InlineAllowed(mimeType string) bool {
	t := BaseMIME(mimeType)
	typ, _, _ := strings.Cut(t, "/")
	for _, a := range fs.DisableForceDownloadForMimeTypes {
		if a == "*/*" || a == t || a == typ+"/*" {
			return true
		}
	}
	return false
}

// SigningKey is an HMAC key for signed links.
type SigningKey struct {
	bun.BaseModel `bun:"table:signing_keys"`

	ID        string     `bun:"id,pk"`
	Secret    string     `bun:"secret"` // base64url of 32 random bytes
	CreatedAt time.Time  `bun:"created_at"`
	RetiredAt *time.Time `bun:"retired_at"`
}

// Bytes returns the key material.
func (k *SigningKey) Bytes() []byte {
	b, _ := base64.RawURLEncoding.DecodeString(k.Secret)
	return b
}

func newSigningKey(now time.Time) *SigningKey {
	b := make([]byte, 32)
	rand.Read(b)
	return &SigningKey{ID: NewID()[:16], Secret: base64.RawURLEncoding.EncodeToString(b), CreatedAt: now}
}

// CurrentSigningKey returns the newest key that is not retired, creating
// the first one when there is none. It returns ErrUnavailable.
func (r *Repo) CurrentSigningKey(ctx context.Context) (*SigningKey, error) {
	k := new(SigningKey)
	err := r.db.NewSelect().Model(k).Where("retired_at IS NULL").Order("created_at DESC", "id").Limit(1).Scan(ctx)
	if err == nil {
		return k, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return nil, dbErr(err)
	}
	k = newSigningKey(r.now())
	if _, err := r.db.NewInsert().Model(k).Exec(ctx); err != nil {
		return nil, dbErr(err)
	}
	return k, nil
}

// SigningKeyByID returns a key that may still verify links. It returns
// ErrNotFound for an unknown or retired key.
func (r *Repo) SigningKeyByID(ctx context.Context, id string) (*SigningKey, error) {
	k := new(SigningKey)
	if err := r.db.NewSelect().Model(k).Where("id = ?", id).Where("retired_at IS NULL").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return k, nil
}

// RotateSigningKey retires every key and creates a new one in one
// transaction, so every link signed so far stops working. It returns the
// new key and ErrUnavailable.
func (r *Repo) RotateSigningKey(ctx context.Context) (*SigningKey, error) {
	now := r.now()
	k := newSigningKey(now)
	err := r.InTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewUpdate().Table("signing_keys").Set("retired_at = ?", now).
			Where("retired_at IS NULL").Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewInsert().Model(k).Exec(ctx)
		return err
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}
