-- Every identity record, stored whole as JSON; the relational work
-- (role resolution, filters) happens on the in-memory index, so the store
-- only needs keyed puts and deletes in one transaction per write.
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id   TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT OR IGNORE INTO meta (key, value) VALUES ('revision', '0');
