-- Sign-in sessions of the admin page (/admin/). The cookie carries a random
-- secret and only its SHA-256 is stored, so a copy of this table cannot be
-- replayed as a cookie. They live in the database so that every instance
-- behind a load balancer honours them and signing out ends them on all.
-- csrf is the per-session token every mutating request must echo.
CREATE TABLE admin_sessions (
    id_hash    TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf       TEXT NOT NULL,
    created_at {{.Timestamp}} NOT NULL,
    expires_at {{.Timestamp}} NOT NULL
);
--bun:split
CREATE INDEX admin_sessions_expires ON admin_sessions (expires_at);
