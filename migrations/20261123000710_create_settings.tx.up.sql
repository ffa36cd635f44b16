-- Admin settings, one JSON document per name (e.g. "files"), shared by
-- every instance through the database.
CREATE TABLE settings (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at {{.Timestamp}} NOT NULL
);
--bun:split
-- HMAC keys of signed links. The newest key that is not retired signs new
-- links; a link names its key, and a retired key verifies nothing, so
-- rotating the key kills every link signed before.
CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at {{.Timestamp}} NOT NULL,
    retired_at {{.Timestamp}}
);
--bun:split
CREATE INDEX signing_keys_created ON signing_keys (created_at);
