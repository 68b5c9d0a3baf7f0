-- The names a portal gives its custom object types, so HubSpot's fully
-- qualified form `p{portalId}_{name}` can name them. A name is lower case
-- (names match without regard to case) and names one type of the portal.
CREATE TABLE custom_object_names (
    portal_id   BIGINT NOT NULL,
    object_type TEXT   NOT NULL,
    name        TEXT   NOT NULL,
    PRIMARY KEY (portal_id, object_type),
    UNIQUE (portal_id, name)
);
