-- agent-orders: agents, catalog, orders, order history, drafts, API keys, idempotency.
-- Everything lives in schema agent_orders (Supabase serves `public` to the world).
-- Paste-able into the Supabase SQL editor; `agent-orders migrate` records it in
-- agent_orders.schema_migrations.

create schema if not exists agent_orders;

-- One row: the key that signs tracking links when AGENT_ORDERS_SECRET_KEY is not set.
create table agent_orders.instance (
    id boolean primary key default true check (id),
    secret_key text not null,
    created_at timestamptz not null default now()
);

create table agent_orders.agents (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null,
    name text not null check (length(name) between 1 and 200),
    currency text not null check (currency ~ '^[A-Z]{3}$'),
    shipping_fee numeric(12,2) not null default 0 check (shipping_fee >= 0),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
create index agents_owner_idx on agent_orders.agents (owner_id, created_at);

create table agent_orders.products (
    id uuid primary key default gen_random_uuid(),
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    sku text not null check (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$'),
    name text not null check (length(name) between 1 and 200),
    description text not null default '' check (length(description) <= 2000),
    unit_price numeric(12,2) not null check (unit_price >= 0),
    stock integer check (stock is null or stock >= 0),
    active boolean not null default true,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    unique (agent_id, sku)
);

create table agent_orders.orders (
    id uuid primary key default gen_random_uuid(),
    order_number text not null unique check (order_number ~ '^ORD-[0-9]{4}-[0-9]{6,}$'),
    agent_id uuid not null references agent_orders.agents (id),
    owner_id uuid not null,
    conversation_id text,
    customer_name text not null,
    customer_email text,
    customer_phone text,
    shipping_address jsonb not null,
    line_items jsonb not null check (jsonb_typeof(line_items) = 'array'),
    subtotal numeric(12,2) not null check (subtotal >= 0),
    shipping_fee numeric(12,2) not null check (shipping_fee >= 0),
    total numeric(12,2) not null check (total = subtotal + shipping_fee),
    currency text not null check (currency ~ '^[A-Z]{3}$'),
    status text not null default 'pending' check (status in
        ('pending', 'confirmed', 'processing', 'packaged', 'shipped', 'delivered', 'cancelled')),
    tracking_number text,
    carrier text,
    estimated_delivery date,
    customer_notes text,
    internal_notes text,
    payment_status text not null default 'pending'
        check (payment_status in ('pending', 'paid', 'refunded', 'failed')),
    payment_method text,
    metadata jsonb not null default '{}'::jsonb,
    version integer not null default 1,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    shipped_at timestamptz,
    delivered_at timestamptz,
    cancelled_at timestamptz
);
-- Owner dashboard: newest first, keyset on (created_at, id), optionally per agent / status.
create index orders_owner_created_idx on agent_orders.orders (owner_id, created_at desc, id desc);
create index orders_agent_created_idx on agent_orders.orders (agent_id, created_at desc, id desc);
create index orders_owner_status_idx on agent_orders.orders (owner_id, status, created_at desc, id desc);
create index orders_agent_status_idx on agent_orders.orders (agent_id, status, created_at desc, id desc);
-- "where's my order?" by email, and the conversation's own orders.
create index orders_email_idx on agent_orders.orders (customer_email, created_at desc);
create index orders_conversation_idx on agent_orders.orders (agent_id, conversation_id)
    where conversation_id is not null;

create table agent_orders.order_events (
    id bigint generated always as identity primary key,
    order_id uuid not null references agent_orders.orders (id) on delete cascade,
    kind text not null check (kind in ('created', 'status_changed', 'tracking_updated', 'note', 'cancelled')),
    from_status text,
    to_status text,
    note text,
    actor text not null check (actor in ('owner', 'agent', 'customer', 'system')),
    customer_visible boolean not null default true,
    conversation_id text,
    tool_call_id text,
    data jsonb not null default '{}'::jsonb,
    created_at timestamptz not null default now()
);
create index order_events_order_idx on agent_orders.order_events (order_id, id);

-- A priced order (or cancellation) the agent proposed, waiting for the customer's yes.
create table agent_orders.drafts (
    id text primary key,
    kind text not null check (kind in ('order', 'cancel')),
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    conversation_id text not null,
    turn integer not null,
    payload jsonb not null,
    order_id uuid references agent_orders.orders (id),
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    confirmed_at timestamptz
);
create index drafts_conversation_idx on agent_orders.drafts (agent_id, conversation_id);

create table agent_orders.api_keys (
    id uuid primary key default gen_random_uuid(),
    owner_id uuid not null,
    name text not null default '',
    prefix text not null unique,
    secret_hash text not null,
    created_at timestamptz not null default now(),
    last_used_at timestamptz,
    revoked_at timestamptz
);
create index api_keys_owner_idx on agent_orders.api_keys (owner_id);

create table agent_orders.idempotency_keys (
    owner_id uuid not null,
    key text not null,
    request_hash text not null,
    status_code integer,
    response jsonb,
    created_at timestamptz not null default now(),
    expires_at timestamptz not null,
    primary key (owner_id, key)
);

-- Row Level Security on every table. The service connects as the tables' owner, which
-- bypasses it; the policies below only matter to Supabase's REST clients.
alter table agent_orders.instance enable row level security;
alter table agent_orders.agents enable row level security;
alter table agent_orders.products enable row level security;
alter table agent_orders.orders enable row level security;
alter table agent_orders.order_events enable row level security;
alter table agent_orders.drafts enable row level security;
alter table agent_orders.api_keys enable row level security;
alter table agent_orders.idempotency_keys enable row level security;

-- On Supabase (an `auth.uid()` exists): owners may read and change their own rows.
do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy agents_owner on agent_orders.agents for all
                 using (owner_id = auth.uid()) with check (owner_id = auth.uid())';
        execute 'create policy products_owner on agent_orders.products for all
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = auth.uid()))
                 with check (exists (select 1 from agent_orders.agents a
                                     where a.id = agent_id and a.owner_id = auth.uid()))';
        execute 'create policy orders_owner on agent_orders.orders for all
                 using (owner_id = auth.uid()) with check (owner_id = auth.uid())';
        execute 'create policy order_events_owner on agent_orders.order_events for select
                 using (exists (select 1 from agent_orders.orders o
                                where o.id = order_id and o.owner_id = auth.uid()))';
        execute 'create policy api_keys_owner on agent_orders.api_keys for select
                 using (owner_id = auth.uid())';
    end if;
end
$$;
