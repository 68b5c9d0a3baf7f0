-- Association storage. Every key begins with portal_id so the schema can be
-- distributed by portal.

-- Per-portal allocator for portal-specific association type ids.
CREATE TABLE portal_type_ids (
    portal_id    BIGINT  PRIMARY KEY,
    next_type_id INTEGER NOT NULL
);

-- Portal-specific association types: admin labels, and unlabeled types of
-- object pairs that have no HubSpot-defined one (custom objects).
CREATE TABLE association_definitions (
    portal_id        BIGINT   NOT NULL,
    category         SMALLINT NOT NULL,
    type_id          INTEGER  NOT NULL,
    inverse_type_id  INTEGER  NOT NULL,
    from_object_type TEXT     NOT NULL,
    to_object_type   TEXT     NOT NULL,
    label            TEXT,
    name             TEXT     NOT NULL,
    PRIMARY KEY (portal_id, category, type_id)
);
CREATE UNIQUE INDEX association_definitions_one_unlabeled
    ON association_definitions (portal_id, from_object_type, to_object_type) WHERE label IS NULL;

-- One row per direction and type: A->B with t and B->A with inverse(t).
CREATE TABLE associations (
    portal_id        BIGINT      NOT NULL,
    from_object_type TEXT        NOT NULL,
    from_object_id   BIGINT      NOT NULL,
    to_object_type   TEXT        NOT NULL,
    to_object_id     BIGINT      NOT NULL,
    category         SMALLINT    NOT NULL,
    type_id          INTEGER     NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (portal_id, from_object_type, from_object_id, to_object_type, to_object_id, category, type_id)
);
CREATE INDEX associations_by_type ON associations (portal_id, category, type_id);

-- How many associations of each type each record holds; the row is the lock
-- that serialises writers of the same record and type.
CREATE TABLE association_counts (
    portal_id   BIGINT   NOT NULL,
    object_type TEXT     NOT NULL,
    object_id   BIGINT   NOT NULL,
    category    SMALLINT NOT NULL,
    type_id     INTEGER  NOT NULL,
    count       BIGINT   NOT NULL CHECK (count >= 0),
    PRIMARY KEY (portal_id, object_type, object_id, category, type_id)
);
CREATE INDEX association_counts_by_type ON association_counts (portal_id, category, type_id);

-- Admin limits ("maxToObjectIds") per association type.
CREATE TABLE association_limits (
    portal_id         BIGINT   NOT NULL,
    category          SMALLINT NOT NULL,
    type_id           INTEGER  NOT NULL,
    from_object_type  TEXT     NOT NULL,
    to_object_type    TEXT     NOT NULL,
    max_to_object_ids INTEGER  NOT NULL CHECK (max_to_object_ids >= 1),
    PRIMARY KEY (portal_id, category, type_id)
);
