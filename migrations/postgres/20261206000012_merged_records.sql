-- Records merged away and the record each now resolves to: a merge of B
-- into A adds (B -> A) and points every record that resolved to B at A, so
-- one lookup resolves any id, however many merges ago it went.
CREATE TABLE merged_records (
    portal_id   BIGINT NOT NULL,
    object_type TEXT   NOT NULL,
    merged_id   BIGINT NOT NULL,
    survivor_id BIGINT NOT NULL,
    PRIMARY KEY (portal_id, object_type, merged_id)
);
CREATE INDEX merged_records_by_survivor ON merged_records (portal_id, object_type, survivor_id);
