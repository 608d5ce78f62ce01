-- The first projection: how many events of each type (also served on /metrics).
CREATE TABLE event_counts
(
    aggregate_type text   NOT NULL,
    event_type     text   NOT NULL,
    events         bigint NOT NULL,
    PRIMARY KEY (aggregate_type, event_type)
);
