-- Fixed-window counters shared by every server process on one database: the public
-- tracking limits when several workers serve without Redis. Unlogged: a counter lost in a
-- crash only forgives a minute's lookups, and no WAL is written for each one.
create unlogged table agent_orders.rate_limits (
    key text primary key,
    hits integer not null,
    resets_at timestamptz not null
);

-- Not owner data: only the service's own role reads or writes it.
alter table agent_orders.rate_limits enable row level security;
