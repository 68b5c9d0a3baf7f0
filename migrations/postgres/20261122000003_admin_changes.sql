-- Admin changes of limits and labels: a per-portal numbered log written in
-- each change's own transaction. It is the durable outbox admin plugins are
-- fed from, in order per portal.

-- The last admin change number handed out per portal (locked until commit,
-- so numbers commit in order).
CREATE TABLE admin_change_heads (
    portal_id BIGINT PRIMARY KEY,
    last_seq  BIGINT NOT NULL
);

CREATE TABLE admin_changes (
    portal_id BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    -- The change as JSON: event, actor, time, object types, before, after.
    change    TEXT   NOT NULL,
    PRIMARY KEY (portal_id, seq)
);

-- How far each plugin has acknowledged each portal's changes.
CREATE TABLE admin_hook_deliveries (
    portal_id     BIGINT NOT NULL,
    plugin        TEXT   NOT NULL,
    delivered_seq BIGINT NOT NULL,
    PRIMARY KEY (portal_id, plugin)
);

-- The built-in audit plugin's trail (one row per admin change).
CREATE TABLE admin_audit_events (
    portal_id BIGINT NOT NULL,
    seq       BIGINT NOT NULL,
    change    TEXT   NOT NULL,
    PRIMARY KEY (portal_id, seq)
);
