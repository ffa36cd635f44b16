-- Per-file access tokens. Only SHA-256 of the secret is stored: a token is
-- shown once, at creation, and nobody (not even an admin) can read it back.
-- The grant itself is a Casbin g2 line (token:<id> -> level:<level> on the
-- node), written in the same transaction.
CREATE TABLE file_tokens (
    id          TEXT PRIMARY KEY,
    node_id     TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    level       TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_by  TEXT NOT NULL DEFAULT '',
    created_at  {{.Timestamp}} NOT NULL,
    expires_at  {{.Timestamp}}
);
--bun:split
CREATE INDEX file_tokens_node ON file_tokens (node_id, level);
