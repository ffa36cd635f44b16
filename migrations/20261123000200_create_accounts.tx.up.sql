-- Accounts. Group memberships and the admin role are Casbin role links in
-- casbin_rule, the one place the authorizer reads them from.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL DEFAULT '',
    disabled      BOOLEAN NOT NULL DEFAULT FALSE,
    quota_bytes   BIGINT NOT NULL DEFAULT 0,
    created_at    {{.Timestamp}} NOT NULL,
    updated_at    {{.Timestamp}} NOT NULL
);
--bun:split
CREATE TABLE user_groups (
    name        TEXT PRIMARY KEY,
    description TEXT NOT NULL DEFAULT '',
    created_at  {{.Timestamp}} NOT NULL
);
--bun:split
-- API keys are shown once; only the SHA-256 of the secret part is kept.
CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users (id),
    label       TEXT NOT NULL DEFAULT '',
    secret_hash TEXT NOT NULL,
    created_at  {{.Timestamp}} NOT NULL,
    expires_at  {{.Timestamp}},
    revoked_at  {{.Timestamp}}
);
--bun:split
CREATE INDEX api_keys_user ON api_keys (user_id);
