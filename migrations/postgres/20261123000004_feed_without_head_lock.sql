-- The change feed without a lock every writer of a portal takes.
--
-- Writers only insert their changes, unnumbered. Readers number them: a
-- sequencer holding the portal's head row gives the next numbers, gap-free,
-- to changes it can see, which are committed ones; a transaction that
-- commits later gets later numbers, so no number is ever filled in after a
-- greater one was read. association_feed_heads holds the last number given;
-- only sequencers lock it.
ALTER TABLE association_changes DROP CONSTRAINT association_changes_pkey;
ALTER TABLE association_changes ADD COLUMN id BIGSERIAL PRIMARY KEY;
ALTER TABLE association_changes ALTER COLUMN seq DROP NOT NULL;
CREATE UNIQUE INDEX association_changes_by_seq ON association_changes (portal_id, seq);
-- Changes not numbered yet, in the order they will be numbered.
CREATE INDEX association_changes_unnumbered ON association_changes (portal_id, id)
    WHERE seq IS NULL;
