-- Unified account model, part 2: national-ID linking state, number history, aliases,
-- structural warnings, link conflicts, administrative units, pairwise subjects and the
-- append-only audit log. Kept column-for-column equal to the PostgreSQL migration of the
-- same name; only auto-increment ids and the append-only triggers are spelled differently.

-- accounts.national_id now holds only a *verified* number (from an upstream trusted to verify
-- national IDs, an import from such a source, or an admin) and is unique. A number asserted
-- by an untrusted upstream, or one that conflicts with the account already holding it, is
-- kept in claimed_national_id with national_id_state 'pending' or 'conflict'.
ALTER TABLE accounts ADD COLUMN claimed_national_id TEXT;
ALTER TABLE accounts ADD COLUMN national_id_state TEXT
    CHECK (national_id_state IS NULL OR national_id_state IN ('pending', 'conflict'));
-- Folded full name (accounts::names::match_key): only suggests review candidates.
ALTER TABLE accounts ADD COLUMN name_key TEXT;

-- Databases written by the first schema may hold one number on several accounts: keep it on
-- the oldest, demote the others to conflicts for review.
UPDATE accounts
   SET claimed_national_id = national_id, national_id_state = 'conflict', national_id = NULL
 WHERE national_id IS NOT NULL
   AND id <> (SELECT MIN(b.id) FROM accounts b WHERE b.national_id = accounts.national_id);

DROP INDEX accounts_national_id;
CREATE UNIQUE INDEX accounts_national_id ON accounts (national_id);
CREATE INDEX accounts_claimed_national_id ON accounts (claimed_national_id);
CREATE INDEX accounts_merged_into ON accounts (merged_into);
CREATE INDEX accounts_name_key ON accounts (name_key);

-- Officials: the unit as the legacy system reported it (a pre-2025 commune code) and the unit
-- in the new city's structure with how it was decided.
ALTER TABLE official_profiles ADD COLUMN legacy_org_unit TEXT;
ALTER TABLE official_profiles ADD COLUMN org_unit_state TEXT
    CHECK (org_unit_state IS NULL OR org_unit_state IN ('mapped', 'ambiguous', 'unknown', 'decided'));
UPDATE official_profiles SET legacy_org_unit = org_unit, org_unit = NULL, org_unit_state = 'unknown'
 WHERE org_unit IS NOT NULL;

-- Numbers an account held before a re-key; they still find the account.
CREATE TABLE national_id_history (
    national_id   TEXT PRIMARY KEY,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    replaced_by   TEXT NOT NULL,
    changed_at    BIGINT NOT NULL
);
CREATE INDEX national_id_history_account ON national_id_history (account_id);

-- Legacy identifiers kept as attributes only (never used to link): 9-digit ID card numbers
-- (CMND, not unique), passport numbers, unrecognised values.
CREATE TABLE account_aliases (
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    kind          TEXT NOT NULL CHECK (kind IN ('cmnd', 'passport', 'other')),
    value         TEXT NOT NULL,
    source        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, kind, value)
);
CREATE INDEX account_aliases_value ON account_aliases (kind, value);

-- Structural oddities of asserted numbers: flagged for admins, never blocking.
CREATE TABLE national_id_warnings (
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    source        TEXT NOT NULL,
    code          TEXT NOT NULL,
    national_id   TEXT,
    detail        TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    PRIMARY KEY (account_id, source, code)
);
CREATE INDEX national_id_warnings_created ON national_id_warnings (created_at);

-- Same number, different person data: not merged, waiting for an admin.
CREATE TABLE link_conflicts (
    id                   BIGSERIAL PRIMARY KEY,
    national_id          TEXT NOT NULL,
    existing_account_id  TEXT NOT NULL REFERENCES accounts(id),
    new_account_id       TEXT NOT NULL REFERENCES accounts(id),
    upstream             TEXT NOT NULL,
    subject              TEXT NOT NULL,
    reason               TEXT NOT NULL,
    detail               TEXT NOT NULL,
    created_at           BIGINT NOT NULL,
    resolved_at          BIGINT,
    resolution           TEXT,
    UNIQUE (existing_account_id, new_account_id, reason)
);
CREATE INDEX link_conflicts_open ON link_conflicts (resolved_at);

-- Pairwise subject identifiers handed to relying parties, so /userinfo can resolve them.
CREATE TABLE pairwise_subjects (
    sub           TEXT PRIMARY KEY,
    sector        TEXT NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id),
    created_at    BIGINT NOT NULL
);

-- Administrative units: versioned sets of the new units, the former units and the explicit
-- former -> new mapping (never code equality).
CREATE TABLE unit_sets (
    version       TEXT PRIMARY KEY,
    source        TEXT NOT NULL,
    imported_at   BIGINT NOT NULL
);
CREATE TABLE admin_units (
    version       TEXT NOT NULL REFERENCES unit_sets(version),
    code          TEXT NOT NULL,
    name          TEXT NOT NULL,
    unit_type     TEXT NOT NULL,
    name_en       TEXT,
    PRIMARY KEY (version, code)
);
CREATE TABLE former_units (
    version       TEXT NOT NULL REFERENCES unit_sets(version),
    code          TEXT NOT NULL,
    name          TEXT NOT NULL,
    unit_type     TEXT NOT NULL,
    province_code TEXT NOT NULL,
    district_code TEXT NOT NULL,
    district_name TEXT NOT NULL,
    PRIMARY KEY (version, code)
);
CREATE TABLE unit_mappings (
    version       TEXT NOT NULL REFERENCES unit_sets(version),
    old_code      TEXT NOT NULL,
    new_code      TEXT NOT NULL,
    note          TEXT NOT NULL,
    PRIMARY KEY (version, old_code, new_code)
);

-- Every admin operation: who, when, what, why. Append-only.
CREATE TABLE audit_log (
    id            BIGSERIAL PRIMARY KEY,
    at            BIGINT NOT NULL,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    target        TEXT NOT NULL,
    reason        TEXT,
    detail        TEXT NOT NULL
);
CREATE INDEX audit_log_target ON audit_log (target);
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only';
END
$$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
