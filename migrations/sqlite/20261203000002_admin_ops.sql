-- Admin operations (issue #13). Kept column-for-column equal to the PostgreSQL migration of
-- the same name.

-- Almost every account has no claimed number and is not merged. Statistics (ANALYZE) count
-- those NULLs as one value shared by every row, so a planner may judge an equality lookup on
-- these indexes as matching the whole table and walk the accounts instead. Partial indexes
-- hold only the rows that can match an equality (their statistics count only those).
DROP INDEX accounts_claimed_national_id;
CREATE INDEX accounts_claimed_national_id ON accounts (claimed_national_id)
    WHERE claimed_national_id IS NOT NULL;
DROP INDEX accounts_merged_into;
CREATE INDEX accounts_merged_into ON accounts (merged_into) WHERE merged_into IS NOT NULL;

-- One run of `sso-gateway accounts import`: who ran it, on which file, what it did.
CREATE TABLE import_runs (
    id                     INTEGER PRIMARY KEY AUTOINCREMENT,
    started_at             BIGINT NOT NULL,
    finished_at            BIGINT NOT NULL,
    actor                  TEXT NOT NULL,
    source                 TEXT NOT NULL,
    file                   TEXT NOT NULL,
    kind                   TEXT NOT NULL,
    strict                 BIGINT NOT NULL,
    rejected               BIGINT NOT NULL,
    rows_total             BIGINT NOT NULL,
    created                BIGINT NOT NULL,
    linked_by_national_id  BIGINT NOT NULL,
    pending                BIGINT NOT NULL,
    conflicts              BIGINT NOT NULL,
    already_imported       BIGINT NOT NULL,
    errors                 BIGINT NOT NULL,
    -- Row errors kept in import_run_errors (the first ones, bounded; `errors` counts all).
    errors_kept            BIGINT NOT NULL
);

CREATE TABLE import_run_errors (
    run_id  BIGINT NOT NULL REFERENCES import_runs(id),
    seq     BIGINT NOT NULL,
    line    BIGINT NOT NULL,
    reason  TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
