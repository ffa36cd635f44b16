package model

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/uptrace/bun"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// User is an account that signs in with a password or an API key.
type User struct {
	bun.BaseModel `bun:"table:users"`

	ID           string    `bun:"id,pk"`
	Name         string    `bun:"name"`
	PasswordHash string    `bun:"password_hash"`
	Disabled     bool      `bun:"disabled"`
	QuotaBytes   int64     `bun:"quota_bytes"`
	CreatedAt    time.Time `bun:"created_at"`
	UpdatedAt    time.Time `bun:"updated_at"`
}

// Group is a named set of users. Memberships are Casbin role links, kept
// by the policy package, so the authorizer has one source of truth.
type Group struct {
	bun.BaseModel `bun:"table:user_groups"`

	Name        string    `bun:"name,pk"`
	Description string    `bun:"description"`
	CreatedAt   time.Time `bun:"created_at"`
}

// APIKey is a bearer credential of a user. Only a hash of its secret is
// stored; the secret is shown once, when the key is created.
type APIKey struct {
	bun.BaseModel `bun:"table:api_keys"`

	ID         string     `bun:"id,pk"`
	UserID     string     `bun:"user_id"`
	Label      string     `bun:"label"`
	SecretHash string     `bun:"secret_hash"`
	CreatedAt  time.Time  `bun:"created_at"`
	ExpiresAt  *time.Time `bun:"expires_at"`
	RevokedAt  *time.Time `bun:"revoked_at"`
}

var accountName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)

// ValidAccountName checks a user or group name: 1 to 64 of [a-z0-9._-],
// starting with a letter or digit, so it is safe inside Casbin subjects
// ("user:NAME") and CSV. It returns ErrInvalid.
func ValidAccountName(name string) error {
	if !accountName.MatchString(name) {
		return fmt.Errorf("%w: names are 1-64 of a-z 0-9 . _ - starting with a letter or digit", ErrInvalid)
	}
	return nil
}

// Argon2id parameters: OWASP's minimum recommendation. Verified passwords
// are cached by the gateway, so the cost is paid once per session, not per
// WebDAV request.
const (
	argonTime    = 2
	argonMemory  = 19 * 1024
	argonThreads = 1
	argonKeyLen  = 32
)

// HashPassword returns an argon2id hash in the PHC string format.
func HashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	key := argon2.IDKey([]byte(password), salt, argonTime, argonMemory, argonThreads, argonKeyLen)
	enc := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, argonMemory, argonTime,
		argonThreads, enc.EncodeToString(salt), enc.EncodeToString(key))
}

// CheckPassword reports whether password matches an argon2id or bcrypt
// hash, in constant time with respect to the password.
func CheckPassword(hash, password string) bool {
	if strings.HasPrefix(hash, "$2") {
		return bcrypt.CompareHashAndPassword([]byte(hash), []byte(password)) == nil
	}
	parts := strings.Split(hash, "$")
	if len(parts) != 6 || parts[1] != "argon2id" {
		return false
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false
	}
	enc := base64.RawStdEncoding
	salt, err1 := enc.DecodeString(parts[4])
	want, err2 := enc.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(want) == 0 {
		return false
	}
	got := argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want)))
	return subtle.ConstantTimeCompare(got, want) == 1
}

// CreateUser adds a user with a password (which may be empty for key-only
// accounts). It returns ErrExists and ErrInvalid.
func (r *Repo) CreateUser(ctx context.Context, name, password string) (*User, error) {
	if err := ValidAccountName(name); err != nil {
		return nil, err
	}
	now := r.now()
	u := &User{ID: NewID(), Name: name, CreatedAt: now, UpdatedAt: now}
	if password != "" {
		u.PasswordHash = HashPassword(password)
	}
	if _, err := r.db.NewInsert().Model(u).Exec(ctx); err != nil {
		return nil, dbErr(err)
	}
	return u, nil
}

// UserByName returns a user. It returns ErrNotFound.
func (r *Repo) UserByName(ctx context.Context, name string) (*User, error) {
	if !plainText(name) {
		return nil, ErrNotFound
	}
	u := new(User)
	var err error
	if h := r.hot.statements(ctx); h != nil {
		err = h.queryOne(ctx, nil, h.userByName, u, name)
	} else {
		err = r.db.NewSelect().Model(u).Where("name = ?", name).Scan(ctx)
	}
	if err != nil {
		return nil, dbErr(err)
	}
	return u, nil
}

// UserByID returns a user. It returns ErrNotFound.
func (r *Repo) UserByID(ctx context.Context, id string) (*User, error) {
	u := new(User)
	if err := r.db.NewSelect().Model(u).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return u, nil
}

// Users lists all users by name.
func (r *Repo) Users(ctx context.Context) ([]*User, error) {
	var us []*User
	if err := r.db.NewSelect().Model(&us).Order("name").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return us, nil
}

// CountUsers returns how many users exist.
func (r *Repo) CountUsers(ctx context.Context) (int, error) {
	n, err := r.db.NewSelect().Model((*User)(nil)).Count(ctx)
	return int(n), dbErr(err)
}

// SetPassword replaces a user's password. It returns ErrNotFound.
func (r *Repo) SetPassword(ctx context.Context, name, password string) error {
	return r.updateUser(ctx, name, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		return q.Set("password_hash = ?", HashPassword(password))
	})
}

// SetDisabled disables or re-enables a user; a disabled user's password
// and keys stop working at the next request. It returns ErrNotFound.
func (r *Repo) SetDisabled(ctx context.Context, name string, disabled bool) error {
	return r.updateUser(ctx, name, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		return q.Set("disabled = ?", disabled)
	})
}

// SetQuota sets the storage quota of a user: the most bytes the live files
// they created may hold, checked by every door at each write (see
// Cond.Quota). Zero removes the quota. Lowering it below what the user
// already stores deletes nothing; their writes that add bytes fail until
// they are under it again. It returns ErrNotFound, and ErrInvalid for a
// negative size.
func (r *Repo) SetQuota(ctx context.Context, name string, bytes int64) error {
	if bytes < 0 {
		return fmt.Errorf("%w: a quota cannot be negative", ErrInvalid)
	}
	return r.updateUser(ctx, name, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		return q.Set("quota_bytes = ?", bytes)
	})
}

// QuotaUsed returns the bytes that count against a user's quota: the sizes
// of the live files they created, wherever those are. Folders, archived
// files and unfinished uploads do not count. It returns ErrUnavailable.
func (r *Repo) QuotaUsed(ctx context.Context, userID string) (int64, error) {
	return quotaUsed(ctx, r.db, userID)
}

func quotaUsed(ctx context.Context, db bun.IDB, userID string) (int64, error) {
	var used sql.NullInt64
	err := db.NewSelect().Table("nodes").ColumnExpr("SUM(size)").
		Where("creator_id = ?", userID).Where("NOT is_dir").
		Where("archived_at IS NULL").Where("status = ?", StatusCompleted).Scan(ctx, &used)
	if err != nil {
		return 0, dbErr(err)
	}
	return used.Int64, nil
}

func (r *Repo) updateUser(ctx context.Context, name string, set func(*bun.UpdateQuery) *bun.UpdateQuery) error {
	q := r.db.NewUpdate().Table("users").Set("updated_at = ?", r.now()).Where("name = ?", name)
	res, err := set(q).Exec(ctx)
	if err != nil {
		return dbErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// CreateGroup adds a group. It returns ErrExists and ErrInvalid.
func (r *Repo) CreateGroup(ctx context.Context, name, description string) (*Group, error) {
	if err := ValidAccountName(name); err != nil {
		return nil, err
	}
	g := &Group{Name: name, Description: description, CreatedAt: r.now()}
	if _, err := r.db.NewInsert().Model(g).Exec(ctx); err != nil {
		return nil, dbErr(err)
	}
	return g, nil
}

// GroupByName returns a group. It returns ErrNotFound.
func (r *Repo) GroupByName(ctx context.Context, name string) (*Group, error) {
	g := new(Group)
	if err := r.db.NewSelect().Model(g).Where("name = ?", name).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return g, nil
}

// Groups lists all groups by name.
func (r *Repo) Groups(ctx context.Context) ([]*Group, error) {
	var gs []*Group
	if err := r.db.NewSelect().Model(&gs).Order("name").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return gs, nil
}

// Secret credentials have the form "<prefix>_<id>_<secret>": the id finds
// the row through the primary key, and only SHA-256(secret) is stored.
// SHA-256 suffices because the secret is 256 random bits, not a password.
const (
	APIKeyPrefix = "fgk"
	TokenPrefix  = "fgt"
)

// NewSecret returns a fresh credential string with its id and the hash to
// store.
func NewSecret(prefix string) (credential, id, hash string) {
	id = NewID()[:20]
	b := make([]byte, 32)
	rand.Read(b)
	secret := base64.RawURLEncoding.EncodeToString(b)
	return prefix + "_" + id + "_" + secret, id, HashSecret(secret)
}

// HashSecret is the stored form of a secret.
func HashSecret(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// ParseSecret splits a credential into id and secret. ok is false when it
// does not have the given prefix and shape.
func ParseSecret(prefix, credential string) (id, secret string, ok bool) {
	rest, found := strings.CutPrefix(credential, prefix+"_")
	if !found {
		return "", "", false
	}
	id, secret, found = strings.Cut(rest, "_")
	if !found || len(id) != 20 || len(secret) < 22 {
		return "", "", false
	}
	return id, secret, true
}

// SecretMatches compares a presented secret with a stored hash in constant
// time.
func SecretMatches(storedHash, secret string) bool {
	return subtle.ConstantTimeCompare([]byte(storedHash), []byte(HashSecret(secret))) == 1
}

// CreateAPIKey mints a key for a user and returns the key row and the
// credential, which is never stored and cannot be shown again. It returns
// ErrNotFound for an unknown user.
func (r *Repo) CreateAPIKey(ctx context.Context, userName, label string, expires *time.Time) (*APIKey, string, error) {
	u, err := r.UserByName(ctx, userName)
	if err != nil {
		return nil, "", err
	}
	cred, id, hash := NewSecret(APIKeyPrefix)
	k := &APIKey{ID: id, UserID: u.ID, Label: label, SecretHash: hash, CreatedAt: r.now(), ExpiresAt: expires}
	if _, err := r.db.NewInsert().Model(k).Exec(ctx); err != nil {
		return nil, "", dbErr(err)
	}
	return k, cred, nil
}

// RevokeAPIKey revokes a key by id. It returns ErrNotFound.
func (r *Repo) RevokeAPIKey(ctx context.Context, id string) error {
	res, err := r.db.NewUpdate().Table("api_keys").Set("revoked_at = ?", r.now()).
		Where("id = ?", id).Where("revoked_at IS NULL").Exec(ctx)
	if err != nil {
		return dbErr(err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// APIKeys lists a user's keys (without secrets).
func (r *Repo) APIKeys(ctx context.Context, userID string) ([]*APIKey, error) {
	var ks []*APIKey
	if err := r.db.NewSelect().Model(&ks).Where("user_id = ?", userID).Order("created_at").Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	return ks, nil
}

// UserByAPIKey authenticates an API key credential and returns its user.
// It returns ErrNotFound for a malformed, unknown, wrong, revoked or
// expired key, and for a disabled user, without saying which.
func (r *Repo) UserByAPIKey(ctx context.Context, credential string) (*User, error) {
	id, secret, ok := ParseSecret(APIKeyPrefix, credential)
	if !ok {
		return nil, ErrNotFound
	}
	k := new(APIKey)
	if err := r.db.NewSelect().Model(k).Where("id = ?", id).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	if !SecretMatches(k.SecretHash, secret) || k.RevokedAt != nil || (k.ExpiresAt != nil && time.Now().After(*k.ExpiresAt)) {
		return nil, ErrNotFound
	}
	u, err := r.UserByID(ctx, k.UserID)
	if err != nil {
		return nil, err
	}
	if u.Disabled {
		return nil, ErrNotFound
	}
	return u, nil
}
