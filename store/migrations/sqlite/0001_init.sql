-- One store for every service: each record is a JSON document keyed by
-- (service, kind, id); every commit bumps its service's revision and appends
-- the commit's changes to the change log, all in one transaction.
CREATE TABLE services (
    name     TEXT PRIMARY KEY,
    revision INTEGER NOT NULL
);
CREATE TABLE records (
    service TEXT NOT NULL,
    kind    TEXT NOT NULL,
    id      TEXT NOT NULL,
    body    TEXT NOT NULL,
    PRIMARY KEY (service, kind, id)
);
CREATE TABLE changelog (
    service      TEXT NOT NULL,
    revision     INTEGER NOT NULL,
    changes      TEXT NOT NULL,
    committed_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (service, revision)
);
