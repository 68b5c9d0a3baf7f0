-- Which process delivers each portal's admin changes to each remote plugin
-- (see the PostgreSQL migration of the same name).
CREATE TABLE admin_hook_leases (
    plugin        TEXT    NOT NULL,
    portal_id     INTEGER NOT NULL,
    holder        TEXT    NOT NULL,
    expires_at_us INTEGER NOT NULL,
    PRIMARY KEY (plugin, portal_id)
) WITHOUT ROWID;
