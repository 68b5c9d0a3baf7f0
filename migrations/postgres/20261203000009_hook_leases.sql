-- Which replica delivers each portal's admin changes to each remote plugin:
-- a lease a replica takes before delivering and renews while it does, so
-- replicas sharing the database do not deliver the same change twice.
-- Times are the database's clock, in microseconds since the Unix epoch.
CREATE TABLE admin_hook_leases (
    plugin        TEXT   NOT NULL,
    portal_id     BIGINT NOT NULL,
    holder        TEXT   NOT NULL,
    expires_at_us BIGINT NOT NULL,
    PRIMARY KEY (plugin, portal_id)
);
