-- One namespace of folders and files. path and lineage are materialised
-- (the names, and the ids, from the root down) so that a path lookup is one
-- index probe and the authorizer gets a node's ancestors without a query.
CREATE TABLE nodes (
    id          TEXT PRIMARY KEY,
    parent_id   TEXT REFERENCES nodes (id),
    name        {{.Key}} NOT NULL,
    path        {{.Key}} NOT NULL,
    lineage     {{.Key}} NOT NULL,
    is_dir      BOOLEAN NOT NULL DEFAULT FALSE,
    size        BIGINT NOT NULL DEFAULT 0,
    mime_type   TEXT NOT NULL DEFAULT '',
    sha256      TEXT NOT NULL DEFAULT '',
    etag        TEXT NOT NULL DEFAULT '',
    blob_key    TEXT NOT NULL DEFAULT '',
    creator_id  TEXT NOT NULL DEFAULT '',
    owner_id    TEXT NOT NULL DEFAULT '',
    tags        TEXT NOT NULL DEFAULT '[]',
    title       TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    source      TEXT NOT NULL DEFAULT '',
    phi         BOOLEAN NOT NULL DEFAULT FALSE,
    status      TEXT NOT NULL DEFAULT 'completed',
    version     BIGINT NOT NULL DEFAULT 1,
    created_at  {{.Timestamp}} NOT NULL,
    updated_at  {{.Timestamp}} NOT NULL,
    mod_time    {{.Timestamp}} NOT NULL,
    archived_at {{.Timestamp}}
);
--bun:split
-- Names are unique among live, completed siblings only: archived nodes and
-- uploads still in progress (status 'new') do not hold a name.
CREATE UNIQUE INDEX nodes_live_sibling ON nodes (parent_id, name)
    WHERE archived_at IS NULL AND status = 'completed';
--bun:split
CREATE UNIQUE INDEX nodes_live_path ON nodes (path)
    WHERE archived_at IS NULL AND status = 'completed';
--bun:split
CREATE INDEX nodes_children ON nodes (parent_id, name);
--bun:split
CREATE INDEX nodes_lineage ON nodes (lineage);
--bun:split
CREATE INDEX nodes_blob_key ON nodes (blob_key);
--bun:split
INSERT INTO nodes (id, parent_id, name, path, lineage, is_dir, status, created_at, updated_at, mod_time)
VALUES ('root', NULL, '', '/', 'root', TRUE, 'completed', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP);
