-- Admin search (accounts::search). The full name folded for accent-insensitive search
-- (accounts::names::search_key: no diacritics, đ → d, lowercase, one space between words),
-- searched by prefix through the index below with keyset pages (name_search, id). Rows
-- written before this migration are filled in by the store at start-up (the folding is Rust
-- code, not SQL); a name-less account gets ''. Kept column-for-column equal to the
-- PostgreSQL migration of the same name.
ALTER TABLE accounts ADD COLUMN name_search TEXT;
CREATE INDEX accounts_name_search ON accounts (name_search, id);

-- Search by official code.
CREATE INDEX official_profiles_official_code ON official_profiles (official_code);
