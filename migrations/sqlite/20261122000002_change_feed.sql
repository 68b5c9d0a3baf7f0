-- The change feed: every association row created or archived, per portal,
-- numbered in commit order.

-- The last sequence number handed out per portal. Writers take numbers from
-- this row as the last step of their transaction and hold its lock until
-- commit, so numbers become visible strictly in order.
CREATE TABLE association_feed_heads (
    portal_id      INTEGER PRIMARY KEY,
    last_seq       INTEGER NOT NULL,
    -- Changes up to here were removed by retention.
    pruned_through INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE association_changes (
    portal_id        INTEGER   NOT NULL,
    seq              INTEGER   NOT NULL,
    kind             INTEGER NOT NULL,
    from_object_type TEXT     NOT NULL,
    from_object_id   INTEGER   NOT NULL,
    to_object_type   TEXT     NOT NULL,
    to_object_id     INTEGER   NOT NULL,
    category         INTEGER NOT NULL,
    type_id          INTEGER  NOT NULL,
    changed_at_us    INTEGER   NOT NULL,
    PRIMARY KEY (portal_id, seq)
) WITHOUT ROWID;
