-- agent-orders: events out. Every order event becomes, in the transaction that writes it,
-- a feed entry (the outbox), one webhook delivery per matching endpoint and, when the
-- customer should hear of it, one email. Deliverers claim rows with FOR UPDATE SKIP LOCKED;
-- the feed pages by the inserting transaction's id, only below the oldest one still running,
-- so a late commit is never skipped.

-- One row per order event, written by the trigger below whatever code inserted the event.
create table agent_orders.outbox (
    event_id bigint primary key references agent_orders.order_events (id) on delete cascade,
    owner_id uuid not null,
    agent_id uuid not null,
    order_id uuid not null,
    type text not null,
    -- The inserting transaction: the feed's order, and what makes late commits safe to page.
    xid xid8 not null default pg_current_xact_id(),
    -- The order as it was when the event was written, so a retry sends the same body.
    order_snapshot jsonb not null,
    created_at timestamptz not null default now()
);
create index outbox_owner_feed_idx on agent_orders.outbox (owner_id, xid, event_id);

create table agent_orders.webhook_endpoints (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null,
    -- Only this agent's orders; null: every agent of the owner.
    agent_id uuid references agent_orders.agents (id) on delete cascade,
    url text not null check (length(url) between 8 and 2000),
    description text not null default '' check (length(description) <= 500),
    -- Webhook types to send; empty: all of them.
    event_types text[] not null default '{}',
    enabled boolean not null default true,
    disabled_reason text,
    -- A signing key (whsec_...), so it is kept as is, not hashed; the API shows it once.
    secret text not null,
    previous_secret text,
    previous_secret_expires_at timestamptz,
    -- Since when every attempt failed (null after a success); 5 days of it disables.
    failing_since timestamptz,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index webhook_endpoints_owner_idx on agent_orders.webhook_endpoints (owner_id, created_at);

create table agent_orders.webhook_deliveries (
    id bigint generated always as identity primary key,
    endpoint_id uuid not null references agent_orders.webhook_endpoints (id) on delete cascade,
    -- Null for a `ping` sent with POST /api/webhooks/{id}/test (its body is in `payload`).
    event_id bigint references agent_orders.outbox (event_id) on delete cascade,
    msg_id text not null unique,
    type text not null,
    payload jsonb,
    state text not null default 'pending' check (state in ('pending', 'succeeded', 'failed')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    locked_until timestamptz,
    locked_by text,
    last_attempt_at timestamptz,
    last_status integer,
    last_response text,
    last_error text,
    succeeded_at timestamptz,
    created_at timestamptz not null default now()
);
create index webhook_deliveries_due_idx on agent_orders.webhook_deliveries (next_attempt_at)
    where state = 'pending';
create index webhook_deliveries_endpoint_idx on agent_orders.webhook_deliveries
    (endpoint_id, id desc);

create table agent_orders.mail_messages (
    id bigint generated always as identity primary key,
    event_id bigint not null references agent_orders.outbox (event_id) on delete cascade,
    owner_id uuid not null,
    order_id uuid not null,
    kind text not null check (kind in ('confirmation', 'shipped', 'delivered', 'cancelled')),
    to_address text not null,
    -- Rendered by the deliverer at its first attempt, then kept as sent.
    subject text,
    text_body text,
    html_body text,
    message_id text,
    -- kept: rendered, no SMTP_URL configured; shown in the dashboard's Mail view.
    state text not null default 'pending' check (state in ('pending', 'sent', 'kept', 'failed')),
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    locked_until timestamptz,
    locked_by text,
    last_error text,
    sent_at timestamptz,
    created_at timestamptz not null default now(),
    unique (event_id, kind)
);
create index mail_messages_due_idx on agent_orders.mail_messages (next_attempt_at)
    where state = 'pending';
create index mail_messages_owner_idx on agent_orders.mail_messages (owner_id, id desc);

-- The webhook type of an event. Kinds added later (payments, edits, problem reports) go out
-- as `order.<kind>` without a change here.
create function agent_orders.webhook_type(kind text, to_status text) returns text
language sql immutable set search_path = pg_catalog as $$
    select case
        when kind = 'created' then 'order.created'
        when kind = 'cancelled' or (kind = 'status_changed' and to_status = 'cancelled')
            then 'order.cancelled'
        when kind = 'status_changed' and to_status in ('confirmed', 'shipped', 'delivered')
            then 'order.' || to_status
        when kind = 'status_changed' then 'order.status_changed'
        when kind = 'tracking_updated' then 'order.tracking_updated'
        when kind = 'note' then 'order.note_added'
        else 'order.' || kind
    end
$$;

create function agent_orders.outbox_fan_out() returns trigger
language plpgsql security definer set search_path = pg_catalog, agent_orders as $$
declare
    o agent_orders.orders;
    t text;
    mail_kind text;
begin
    -- AFTER triggers see the whole statement's work, the order inserted beside the event too.
    select * into o from orders where id = new.order_id;
    if not found then
        return null;
    end if;
    t := webhook_type(new.kind, new.to_status);
    insert into outbox (event_id, owner_id, agent_id, order_id, type, order_snapshot)
    values (new.id, o.owner_id, o.agent_id, o.id, t, to_jsonb(o));
    insert into webhook_deliveries (endpoint_id, event_id, msg_id, type)
    select e.id, new.id, 'msg_' || replace(gen_random_uuid()::text, '-', ''), t
    from webhook_endpoints e
    where e.owner_id = o.owner_id and e.enabled
      and (e.agent_id is null or e.agent_id = o.agent_id)
      and (cardinality(e.event_types) = 0 or t = any(e.event_types));
    mail_kind := case t
        when 'order.created' then 'confirmation'
        when 'order.shipped' then 'shipped'
        when 'order.delivered' then 'delivered'
        when 'order.cancelled' then 'cancelled'
    end;
    if mail_kind is not null and new.customer_visible and o.customer_email is not null then
        insert into mail_messages (event_id, owner_id, order_id, kind, to_address)
        values (new.id, o.owner_id, o.id, mail_kind, o.customer_email);
    end if;
    -- Wakes idle deliverers at commit (nothing is sent if the transaction rolls back).
    perform pg_notify('agent_orders_outbox', '');
    return null;
end
$$;

create trigger order_events_outbox after insert on agent_orders.order_events
    for each row execute function agent_orders.outbox_fan_out();

alter table agent_orders.outbox enable row level security;
alter table agent_orders.webhook_endpoints enable row level security;
alter table agent_orders.webhook_deliveries enable row level security;
alter table agent_orders.mail_messages enable row level security;

do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy outbox_owner on agent_orders.outbox for select
                 using (owner_id = auth.uid())';
        execute 'create policy webhook_endpoints_owner on agent_orders.webhook_endpoints
                 for select using (owner_id = auth.uid())';
        execute 'create policy webhook_deliveries_owner on agent_orders.webhook_deliveries
                 for select using (exists (select 1 from agent_orders.webhook_endpoints e
                                           where e.id = endpoint_id and e.owner_id = auth.uid()))';
        execute 'create policy mail_messages_owner on agent_orders.mail_messages for select
                 using (owner_id = auth.uid())';
    end if;
end
$$;
