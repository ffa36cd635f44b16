-- WebDAV dead properties (PROPPATCH): one row per property of a node, the
-- value kept as self-contained XML (every element declares its namespace)
-- so it can be replayed verbatim in any response. Rows go with their node
-- when it is purged; archived nodes keep theirs for a restore.
CREATE TABLE dead_props (
    node_id TEXT NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    ns      TEXT NOT NULL,
    name    TEXT NOT NULL,
    lang    TEXT NOT NULL DEFAULT '',
    value   TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (node_id, ns, name)
);
--bun:split
-- WebDAV locks, shared by every instance. root is the clean path the lock
-- was taken on (locks belong to names, not to nodes, and a MOVE or DELETE
-- removes the locks below the path); expires_ms is Unix milliseconds so
-- that both databases compare it as a number.
CREATE TABLE dav_locks (
    token       TEXT PRIMARY KEY,
    root        {{.Key}} NOT NULL,
    infinite    BOOLEAN NOT NULL DEFAULT FALSE,
    shared      BOOLEAN NOT NULL DEFAULT FALSE,
    owner_xml   TEXT NOT NULL DEFAULT '',
    subject     TEXT NOT NULL DEFAULT '',
    timeout_s   BIGINT NOT NULL,
    created_at  {{.Timestamp}} NOT NULL,
    expires_ms  BIGINT NOT NULL
);
--bun:split
CREATE INDEX dav_locks_root ON dav_locks (root);
--bun:split
CREATE INDEX dav_locks_expiry ON dav_locks (expires_ms);
