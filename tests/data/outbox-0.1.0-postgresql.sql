CREATE TABLE gbtrack_outbox (
    id BIGSERIAL NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER DEFAULT '0' NOT NULL,
    next_attempt_at DOUBLE PRECISION DEFAULT '0' NOT NULL,
    claimed_by VARCHAR(255),
    lease_until DOUBLE PRECISION,
    last_error TEXT,
    claim_token VARCHAR(64),
    PRIMARY KEY (id)
);

CREATE INDEX ix_gbtrack_outbox_claimed_by ON gbtrack_outbox (claimed_by);

CREATE INDEX ix_gbtrack_outbox_ready ON gbtrack_outbox (next_attempt_at);

CREATE TABLE gbtrack_outbox_dead (
    id BIGSERIAL NOT NULL,
    event_id VARCHAR(64) NOT NULL,
    name VARCHAR(255) NOT NULL,
    customer_id VARCHAR(255) NOT NULL,
    payload TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    enqueued_at DOUBLE PRECISION NOT NULL,
    attempts INTEGER NOT NULL,
    status INTEGER,
    code INTEGER,
    message TEXT,
    failed_at DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (id)
);
