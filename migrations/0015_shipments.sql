-- agent-orders: shipments. An order ships in one or more parcels (carrier, tracking number, the
-- lines in it), each with an append-only list of carrier events; carrier webhooks come in per
-- store account, and an update for a tracking number no shipment has is kept for the owner.
-- Today's orders.carrier / orders.tracking_number become each order's first shipment.

create table agent_orders.shipments (
    id uuid primary key default gen_random_uuid(),
    order_id uuid not null references agent_orders.orders (id) on delete cascade,
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    carrier text not null check (length(carrier) between 1 and 64),
    tracking_number text not null check (length(tracking_number) between 1 and 64),
    estimated_delivery date,
    -- Derived from the shipment's carrier events (by the carrier's time), never set by hand:
    -- the latest event's kind and time, the first scan, the first delivery.
    status text,
    status_at timestamptz,
    first_scan_at timestamptz,
    delivered_at timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index shipments_order_idx on agent_orders.shipments (order_id, created_at, id);
-- Inbound carrier updates find their shipment by store and tracking number. Not unique: a
-- number may be reused by a carrier years later, or ship two orders in one parcel.
create index shipments_tracking_idx on agent_orders.shipments (agent_id, tracking_number);

-- Which of the order's lines (by position in orders.line_items, from 0) and how many of each.
create table agent_orders.shipment_lines (
    shipment_id uuid not null references agent_orders.shipments (id) on delete cascade,
    line_index integer not null check (line_index >= 0),
    quantity integer not null check (quantity > 0),
    primary key (shipment_id, line_index)
);

create table agent_orders.carrier_events (
    id bigint generated always as identity primary key,
    shipment_id uuid not null references agent_orders.shipments (id) on delete cascade,
    kind text not null check (kind in ('label_created', 'in_transit', 'out_for_delivery',
        'delivered', 'failed_attempt', 'exception', 'returned_to_sender')),
    occurred_at timestamptz not null,
    location text check (length(location) <= 200),
    description text check (length(description) <= 500),
    carrier_status text check (length(carrier_status) <= 100),
    source text not null check (source in ('easypost', 'aftership', 'generic', 'owner')),
    -- The provider's event id when it has one, else a hash of the event's content: a replayed
    -- or duplicated webhook finds its events here and adds nothing.
    dedupe_key text not null check (length(dedupe_key) <= 200),
    received_at timestamptz not null default now(),
    unique (shipment_id, dedupe_key)
);
create index carrier_events_shipment_idx on agent_orders.carrier_events (shipment_id, occurred_at);

-- Append-only: a carrier event is what the carrier said; nothing rewrites it.
create function agent_orders.carrier_events_append_only() returns trigger
language plpgsql set search_path = pg_catalog as $$
begin
    raise exception 'carrier events are append-only' using errcode = 'insufficient_privilege';
end
$$;
create trigger carrier_events_no_update before update on agent_orders.carrier_events
    for each row execute function agent_orders.carrier_events_append_only();

-- A store's account with a tracking provider: where its webhooks are verified. The secret
-- must be kept readable (an HMAC key), so the table is closed to the REST roles entirely.
create table agent_orders.carrier_accounts (
    id uuid primary key default gen_random_uuid(),
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    provider text not null check (provider in ('easypost', 'aftership', 'generic')),
    secret text not null check (length(secret) between 8 and 200),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (agent_id, provider)
);

-- Updates for tracking numbers no shipment of the store has (yet): kept, one row per number,
-- for the owner to see; adding a shipment with that number applies them.
create table agent_orders.carrier_unmatched (
    id bigint generated always as identity primary key,
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    provider text not null,
    tracking_number text not null check (length(tracking_number) between 1 and 64),
    carrier text,
    events jsonb not null default '[]'::jsonb check (jsonb_typeof(events) = 'array'),
    updates integer not null default 1,
    first_seen_at timestamptz not null default now(),
    last_seen_at timestamptz not null default now(),
    unique (agent_id, tracking_number)
);

-- Backfill: every order with a tracking number gets it as its first shipment, holding every
-- line; a delivered order's shipment is delivered when the order was.
with made as (
    insert into agent_orders.shipments (order_id, agent_id, carrier, tracking_number,
        estimated_delivery, status, status_at, first_scan_at, delivered_at, created_at)
    select o.id, o.agent_id, coalesce(nullif(btrim(o.carrier), ''), 'other'),
           left(btrim(o.tracking_number), 64), o.estimated_delivery,
           case when o.status = 'delivered' then 'delivered' end,
           case when o.status = 'delivered' then o.delivered_at end,
           case when o.status in ('shipped', 'delivered') then coalesce(o.shipped_at, o.delivered_at) end,
           case when o.status = 'delivered' then o.delivered_at end,
           coalesce(o.shipped_at, o.updated_at)
    from agent_orders.orders o
    where nullif(btrim(o.tracking_number), '') is not null
    returning id, order_id
)
insert into agent_orders.shipment_lines (shipment_id, line_index, quantity)
select m.id, (l.n - 1)::int, (l.line ->> 'quantity')::int
from made m
join agent_orders.orders o on o.id = m.order_id
cross join lateral jsonb_array_elements(o.line_items) with ordinality as l(line, n)
where (l.line ->> 'quantity')::int > 0;

-- Order events: a shipment added, and one kind per carrier event kind (each goes out as
-- `order.<kind>`); the customer hears of "out for delivery" and a failed attempt by mail
-- (delivery itself by the order's own `order.delivered` mail, once every parcel arrived).
insert into agent_orders.event_kinds (kind) values
    ('shipment_created'), ('shipment_label_created'), ('shipment_in_transit'),
    ('shipment_out_for_delivery'), ('shipment_delivered'), ('shipment_failed_attempt'),
    ('shipment_exception'), ('shipment_returned_to_sender');
insert into agent_orders.customer_mail (webhook_type, mail_kind) values
    ('order.shipment_out_for_delivery', 'out_for_delivery'),
    ('order.shipment_failed_attempt', 'failed_attempt');

alter table agent_orders.shipments enable row level security;
alter table agent_orders.shipment_lines enable row level security;
alter table agent_orders.carrier_events enable row level security;
alter table agent_orders.carrier_accounts enable row level security;
alter table agent_orders.carrier_unmatched enable row level security;

do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            execute format('revoke insert, update, delete, truncate on agent_orders.shipments,'
                           ' agent_orders.shipment_lines, agent_orders.carrier_events,'
                           ' agent_orders.carrier_unmatched from %I', r);
            execute format('revoke all on agent_orders.carrier_accounts from %I', r);
        end if;
    end loop;
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy shipments_owner on agent_orders.shipments for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))';
        execute 'create policy shipment_lines_owner on agent_orders.shipment_lines for select
                 using (exists (select 1 from agent_orders.shipments s
                                join agent_orders.agents a on a.id = s.agent_id
                                where s.id = shipment_id and a.owner_id = (select auth.uid())))';
        execute 'create policy carrier_events_owner on agent_orders.carrier_events for select
                 using (exists (select 1 from agent_orders.shipments s
                                join agent_orders.agents a on a.id = s.agent_id
                                where s.id = shipment_id and a.owner_id = (select auth.uid())))';
        execute 'create policy carrier_unmatched_owner on agent_orders.carrier_unmatched for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))';
    end if;
end
$$;

create trigger shipments_no_rest_truncate before truncate on agent_orders.shipments
    for each statement execute function agent_orders.refuse_rest_truncate();
create trigger carrier_events_no_rest_truncate before truncate on agent_orders.carrier_events
    for each statement execute function agent_orders.refuse_rest_truncate();
