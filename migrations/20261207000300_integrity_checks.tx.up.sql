-- Runs of the scheduled integrity check (serve --check-interval), shared by
-- every instance. At most one run is 'running' (the partial unique index);
-- the instance named in holder works on it while lease_until_ms is in the
-- future and renews it as it goes, saving resume_after (a node id up to
-- which every file has been judged) and its counts. When that instance
-- stops or dies, the lease runs out and the next instance to look resumes
-- the run from resume_after.
CREATE TABLE integrity_checks (
    id             TEXT PRIMARY KEY,
    started_at     {{.Timestamp}} NOT NULL,
    finished_at    {{.Timestamp}},
    state          TEXT NOT NULL,
    holder         TEXT NOT NULL,
    lease_until_ms BIGINT NOT NULL,
    resume_after   TEXT NOT NULL DEFAULT '',
    files          BIGINT NOT NULL DEFAULT 0,
    bytes          BIGINT NOT NULL DEFAULT 0,
    problems       BIGINT NOT NULL DEFAULT 0,
    changed        BIGINT NOT NULL DEFAULT 0,
    error          TEXT NOT NULL DEFAULT ''
);
--bun:split
CREATE UNIQUE INDEX integrity_checks_one_running ON integrity_checks (state) WHERE state = 'running';
--bun:split
CREATE INDEX integrity_checks_started ON integrity_checks (started_at);
--bun:split
-- What a run found: one row per damaged file. A resumed run may judge a
-- file twice; the key keeps one row.
CREATE TABLE integrity_problems (
    check_id  TEXT NOT NULL REFERENCES integrity_checks (id) ON DELETE CASCADE,
    node_id   TEXT NOT NULL,
    path      TEXT NOT NULL,
    blob_key  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    recorded  TEXT NOT NULL,
    stored    TEXT NOT NULL,
    archived  BOOLEAN NOT NULL,
    found_at  {{.Timestamp}} NOT NULL,
    PRIMARY KEY (check_id, node_id)
);
