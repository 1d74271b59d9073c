-- One store for every service: each record is a JSON document keyed by
-- (service, kind, id); every commit bumps its service's revision, appends the
-- commit's changes to the change log and notifies the other replicas
-- (channel weft_store), all in one transaction.
CREATE TABLE services (
    name     TEXT PRIMARY KEY,
    revision BIGINT NOT NULL
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
    revision     BIGINT NOT NULL,
    changes      TEXT NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (service, revision)
);
