-- The admin change log (the hooks outbox) without a lock every admin change
-- of a portal takes: as the change feed, changes are inserted unnumbered and
-- numbered by readers once committed (see 20261123000004).
ALTER TABLE admin_changes DROP CONSTRAINT admin_changes_pkey;
ALTER TABLE admin_changes ADD COLUMN id BIGSERIAL PRIMARY KEY;
ALTER TABLE admin_changes ALTER COLUMN seq DROP NOT NULL;
CREATE UNIQUE INDEX admin_changes_by_seq ON admin_changes (portal_id, seq);
CREATE INDEX admin_changes_unnumbered ON admin_changes (portal_id, id) WHERE seq IS NULL;
