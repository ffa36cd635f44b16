-- Failed password sign-ins, counted per key: "name:<account name>" and
-- "addr:<client address>". They live in the database so that a guesser
-- spreading attempts over several instances meets one count, and a block
-- set by one instance holds on all. Rows whose failures are old and whose
-- block is over are pruned as new failures come.
CREATE TABLE sign_in_failures (
    key              TEXT PRIMARY KEY,
    failures         BIGINT NOT NULL,
    last_ms          BIGINT NOT NULL,
    blocked_until_ms BIGINT NOT NULL DEFAULT 0
);
--bun:split
CREATE INDEX sign_in_failures_last ON sign_in_failures (last_ms);
