-- Feed retention finds each portal's cut in this index.
CREATE INDEX association_changes_by_time ON association_changes (portal_id, changed_at_us, seq);
