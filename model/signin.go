package model

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/uptrace/bun"
)

// SignInLimits say when failed password sign-ins block further attempts.
// Each key (an account name, a client address) counts its failures; once
// a key reaches its limit, password checks for it are refused for Block,
// doubled with every further failure up to MaxBlock. A failure more than
// Forget after the key's last one starts the count again, and a success
// clears the account's count.
type SignInLimits struct {
	// PerAccount is the failures one account name may have before it is
	// blocked; zero means DefaultSignInLimits', negative never blocks.
	PerAccount int
	// PerAddress is the failures one client address may have, over every
	// name it tries, before it is blocked; zero means the default,
	// negative never blocks. It is higher than PerAccount because many
	// users may share one address behind a hospital's NAT.
	PerAddress int
	// Block is the first block; MaxBlock caps the doubling.
	Block, MaxBlock time.Duration
	// Forget is how long a key's failures are remembered.
	Forget time.Duration
}

// DefaultSignInLimits are the limits a zero field takes: 10 failures per
// account and 100 per address, blocks from one minute up to one hour, and
// failures forgotten after a quiet hour. NIST SP 800-63B asks for at most
// 100 consecutive failures per account.
var DefaultSignInLimits = SignInLimits{PerAccount: 10, PerAddress: 100, Block: time.Minute, MaxBlock: time.Hour, Forget: time.Hour}

// withDefaults fills zero fields from DefaultSignInLimits.
func (l SignInLimits) withDefaults() SignInLimits {
	d := DefaultSignInLimits
	if l.PerAccount == 0 {
		l.PerAccount = d.PerAccount
	}
	if l.PerAddress == 0 {
		l.PerAddress = d.PerAddress
	}
	if l.Block <= 0 {
		l.Block = d.Block
	}
	if l.MaxBlock <= 0 {
		l.MaxBlock = d.MaxBlock
	}
	l.MaxBlock = max(l.MaxBlock, l.Block)
	if l.Forget <= 0 {
		l.Forget = d.Forget
	}
	return l
}

// SignInKeys are the keys a sign-in attempt as name from addr counts
// against. Account names are compared without case, as a guesser may vary
// it; addr is a client address without port ("" for none).
func SignInKeys(name, addr string) (account, address string) {
	n := strings.ToLower(name)
	if len(n) > 200 || !utf8.ValidString(n) || strings.IndexByte(n, 0) >= 0 {
		// Whatever a client sends as a name must make a key PostgreSQL
		// can store and index: text without NUL, valid UTF-8, short.
		sum := sha256.Sum256([]byte(n))
		n = "sha256:" + hex.EncodeToString(sum[:])
	}
	account = "name:" + n
	if addr != "" {
		address = "addr:" + addr
	}
	return account, address
}

type signInFailure struct {
	bun.BaseModel `bun:"table:sign_in_failures"`

	Key            string `bun:"key,pk"`
	Failures       int64  `bun:"failures"`
	LastMS         int64  `bun:"last_ms"`
	BlockedUntilMS int64  `bun:"blocked_until_ms"`
}

// SignInBlockedUntil returns when the latest block of the given keys ends,
// or the zero time when none of them is blocked at now. Empty keys are
// skipped. It returns ErrUnavailable when the database cannot say.
func (r *Repo) SignInBlockedUntil(ctx context.Context, now time.Time, keys ...string) (time.Time, error) {
	keys = nonEmpty(keys)
	if len(keys) == 0 {
		return time.Time{}, nil
	}
	var until int64
	err := r.db.NewSelect().Model((*signInFailure)(nil)).ColumnExpr("COALESCE(MAX(blocked_until_ms), 0)").
		Where("key IN (?)", bun.In(keys)).Where("blocked_until_ms > ?", now.UnixMilli()).Scan(ctx, &until)
	if err != nil {
		return time.Time{}, dbErr(err)
	}
	if until == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(until).UTC(), nil
}

// SignInFailed counts a failed sign-in against the account key and the
// address key (either may be empty) and returns when the block it set ends
// (the zero time when it set none). It also prunes keys whose failures
// were forgotten and whose block is over. It returns ErrUnavailable.
func (r *Repo) SignInFailed(ctx context.Context, lim SignInLimits, now time.Time, account, address string) (time.Time, error) {
	lim = lim.withDefaults()
	nowMS, forgotten := now.UnixMilli(), now.Add(-lim.Forget).UnixMilli()
	var until int64
	err := r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		for _, k := range []struct {
			key   string
			limit int
		}{{account, lim.PerAccount}, {address, lim.PerAddress}} {
			if k.key == "" {
				continue
			}
			row := &signInFailure{Key: k.key, Failures: 1, LastMS: nowMS}
			err := tx.NewInsert().Model(row).
				On("CONFLICT (key) DO UPDATE").
				Set("failures = CASE WHEN ?TableAlias.last_ms < ? THEN 1 ELSE ?TableAlias.failures + 1 END", forgotten).
				Set("last_ms = EXCLUDED.last_ms").
				Returning("failures, blocked_until_ms").Scan(ctx, &row.Failures, &row.BlockedUntilMS)
			if err != nil {
				return err
			}
			if k.limit < 0 || row.Failures < int64(k.limit) {
				continue
			}
			block := lim.Block
			for n := row.Failures - int64(k.limit); n > 0 && block < lim.MaxBlock; n-- {
				block *= 2
			}
			end := now.Add(min(block, lim.MaxBlock)).UnixMilli()
			if _, err := tx.NewUpdate().Model((*signInFailure)(nil)).Set("blocked_until_ms = ?", end).
				Where("key = ?", k.key).Exec(ctx); err != nil {
				return err
			}
			until = max(until, end)
		}
		_, err := tx.NewDelete().Model((*signInFailure)(nil)).
			Where("last_ms < ?", forgotten).Where("blocked_until_ms < ?", nowMS).Exec(ctx)
		return err
	})
	if err != nil {
		return time.Time{}, dbErr(err)
	}
	if until == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(until).UTC(), nil
}

// SignInSucceeded forgets the failures of the account key, so a user who
// mistyped a few times starts again from nothing. The address's count is
// kept: one success from an address does not excuse its guesses at other
// accounts. It returns ErrUnavailable.
func (r *Repo) SignInSucceeded(ctx context.Context, account string) error {
	err := r.writeTx(ctx, func(ctx context.Context, tx bun.Tx) error {
		_, err := tx.NewDelete().Model((*signInFailure)(nil)).Where("key = ?", account).Exec(ctx)
		return err
	})
	return dbErr(err)
}

func nonEmpty(ss []string) []string {
	out := ss[:0:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// SignInBlocks returns the keys blocked at now and when each block ends,
// for an admin's list of accounts. It returns ErrUnavailable.
func (r *Repo) SignInBlocks(ctx context.Context, now time.Time) (map[string]time.Time, error) {
	var rows []signInFailure
	if err := r.db.NewSelect().Model(&rows).Where("blocked_until_ms > ?", now.UnixMilli()).Scan(ctx); err != nil {
		return nil, dbErr(err)
	}
	out := make(map[string]time.Time, len(rows))
	for _, row := range rows {
		out[row.Key] = time.UnixMilli(row.BlockedUntilMS).UTC()
	}
	return out, nil
}
