-- Unified accounts and the upstream identities linked to them.
CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    sub           TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('citizen', 'official')),
    status        TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'locked', 'merged')),
    merged_into   TEXT REFERENCES accounts(id),
    national_id   TEXT,
    full_name     TEXT,
    given_name    TEXT,
    family_name   TEXT,
    birthdate     TEXT,
    gender        TEXT,
    email         TEXT,
    phone         TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX accounts_national_id ON accounts (national_id);

CREATE TABLE identity_links (
    upstream       TEXT NOT NULL,
    subject        TEXT NOT NULL,
    account_id     TEXT NOT NULL REFERENCES accounts(id),
    link_method    TEXT NOT NULL,
    linked_at      BIGINT NOT NULL,
    last_login_at  BIGINT NOT NULL,
    PRIMARY KEY (upstream, subject)
);
CREATE INDEX identity_links_account ON identity_links (account_id);

CREATE TABLE official_profiles (
    account_id     TEXT PRIMARY KEY REFERENCES accounts(id),
    official_code  TEXT,
    former_province TEXT,
    org_unit       TEXT,
    position       TEXT,
    roles          TEXT NOT NULL DEFAULT '[]',
    updated_at     BIGINT NOT NULL
);
