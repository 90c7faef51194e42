-- agent-orders: after the order. Orders can be edited before they ship (an `edited` event
-- carries the diff), delivered items can be returned within the store's window, and the
-- agent drafts both for the customer's yes like every other write.

-- Store settings: days after delivery a return may be asked for (0: no returns), and whether
-- orders stay editable while `processing` (always while pending or confirmed).
alter table agent_orders.agents
    add column return_window_days integer not null default 30
        check (return_window_days between 0 and 365),
    add column editable_while_processing boolean not null default false;

-- The agent drafts edits (`modify`) and returns (`return`) too.
alter table agent_orders.drafts drop constraint drafts_kind_check;
alter table agent_orders.drafts add constraint drafts_kind_check
    check (kind in ('order', 'cancel', 'modify', 'return'));

create table agent_orders.returns (
    id uuid primary key default gen_random_uuid(),
    order_id uuid not null references agent_orders.orders (id) on delete cascade,
    owner_id uuid not null,
    agent_id uuid not null references agent_orders.agents (id) on delete cascade,
    state text not null default 'requested'
        check (state in ('requested', 'approved', 'received', 'refunded', 'rejected')),
    -- The returned units as order lines, at the price they were sold at.
    lines jsonb not null check (jsonb_typeof(lines) = 'array' and jsonb_array_length(lines) > 0),
    amount numeric(12,2) not null check (amount >= 0),
    refunded numeric(12,2) check (refunded >= 0 and refunded <= amount),
    reason text check (length(reason) <= 2000),
    -- The owner's note for the customer (on rejecting, or any step).
    note text check (length(note) <= 2000),
    requested_by text not null check (requested_by in ('owner', 'agent', 'customer', 'system')),
    conversation_id text,
    tool_call_id text,
    -- The draft the customer confirmed: confirming it again finds this return.
    draft_id text unique,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    approved_at timestamptz,
    received_at timestamptz,
    refunded_at timestamptz,
    rejected_at timestamptz,
    check ((state = 'refunded') = (refunded_at is not null and refunded is not null))
);
create index returns_order_idx on agent_orders.returns (order_id, created_at);
-- The owner's queue, oldest first, by state.
create index returns_owner_idx on agent_orders.returns (owner_id, state, created_at);

alter table agent_orders.returns enable row level security;
create trigger returns_no_rest_truncate before truncate on agent_orders.returns
    for each statement execute function agent_orders.refuse_rest_truncate();

-- Like the order tables (0006, 0011): read-only for the REST roles, tied to the agent's owner.
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'anon') then
        execute 'revoke insert, update, delete, truncate on agent_orders.returns from anon';
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
        execute 'revoke insert, update, delete, truncate on agent_orders.returns from authenticated';
    end if;
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy returns_owner on agent_orders.returns for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))';
    end if;
end
$$;

-- The events these write; each goes out as `order.<kind>`.
insert into agent_orders.event_kinds (kind) values
    ('edited'), ('return_requested'), ('return_approved'), ('return_rejected'),
    ('return_received'), ('return_refunded');

-- The customer hears of each step of a return by email.
insert into agent_orders.customer_mail (webhook_type, mail_kind) values
    ('order.return_requested', 'return_requested'), ('order.return_approved', 'return_approved'),
    ('order.return_rejected', 'return_rejected'), ('order.return_refunded', 'return_refunded');
