-- Resumable (tus) uploads in progress. A session is the only trace of an
-- upload until its last byte arrives: it holds no name in the namespace
-- (WebDAV and folder listings never see it), only its owner can reach it,
-- and the file appears at folder_id/name in one step when it completes.
-- Finished sessions stay until expires_ms so that a retried request (a HEAD
-- after a lost response, a repeated final concatenation) finds the result
-- instead of starting over. expires_ms is Unix milliseconds so that both
-- databases compare it as a number.
CREATE TABLE upload_sessions (
    id            TEXT PRIMARY KEY,
    owner         TEXT NOT NULL,
    owner_user_id TEXT NOT NULL DEFAULT '',
    folder_id     TEXT NOT NULL DEFAULT '',
    folder_path   TEXT NOT NULL DEFAULT '',
    name          TEXT NOT NULL DEFAULT '',
    size          BIGINT NOT NULL DEFAULT 0,
    size_deferred BOOLEAN NOT NULL DEFAULT FALSE,
    upload_offset BIGINT NOT NULL DEFAULT 0,
    is_partial    BOOLEAN NOT NULL DEFAULT FALSE,
    is_final      BOOLEAN NOT NULL DEFAULT FALSE,
    partials      TEXT NOT NULL DEFAULT '',
    concat_key    TEXT,
    metadata      TEXT NOT NULL DEFAULT '{}',
    sha256        TEXT NOT NULL DEFAULT '',
    status        TEXT NOT NULL DEFAULT 'new',
    node_id       TEXT NOT NULL DEFAULT '',
    created_at    {{.Timestamp}} NOT NULL,
    updated_at    {{.Timestamp}} NOT NULL,
    expires_ms    BIGINT NOT NULL
);
--bun:split
-- One final concatenation per owner and list of parts, so that a retried
-- final POST finds the upload the first one made.
CREATE UNIQUE INDEX upload_sessions_concat ON upload_sessions (concat_key)
    WHERE concat_key IS NOT NULL;
--bun:split
CREATE INDEX upload_sessions_expiry ON upload_sessions (expires_ms);
--bun:split
-- The quota check sums an owner's pending uploads.
CREATE INDEX upload_sessions_owner ON upload_sessions (owner_user_id, status);
--bun:split
-- The quota check also sums the sizes of the files a user created.
CREATE INDEX nodes_creator ON nodes (creator_id);
--bun:split
-- Cross-instance upload locks on PostgreSQL: a lease row per locked upload,
-- refreshed by its holder. A holder that dies stops refreshing, and once
-- expires_ms has passed any instance may take the row over. Another
-- instance that wants the upload sets release_requested; the holder sees
-- it on its next refresh and ends its request early.
CREATE TABLE upload_locks (
    id                TEXT PRIMARY KEY,
    holder            TEXT NOT NULL,
    expires_ms        BIGINT NOT NULL,
    release_requested BOOLEAN NOT NULL DEFAULT FALSE
);
--bun:split
CREATE INDEX upload_locks_holder ON upload_locks (holder);
