-- Limit usage: "records of this type at or above N" is one range of this
-- index; it leads with what association_counts_by_type held.
CREATE INDEX association_counts_by_usage
    ON association_counts (portal_id, category, type_id, object_type, count, object_id);
DROP INDEX association_counts_by_type;
