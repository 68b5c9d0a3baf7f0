-- The calls each portal was given of each UTC day (days since the Unix
-- epoch), across every replica: a replica draws a few at a time and never
-- past the daily quota, so the quota holds however many replicas serve.
CREATE TABLE daily_call_counts (
    portal_id BIGINT NOT NULL,
    day       BIGINT NOT NULL,
    used      BIGINT NOT NULL,
    PRIMARY KEY (portal_id, day)
);
