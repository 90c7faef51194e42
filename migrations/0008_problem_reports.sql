-- agent-orders: "it never arrived" has a path. A customer's problem report on a placed order
-- (through the agent's report_problem tool) is an owner-facing case, opened and resolved with
-- customer-visible events on the order's history.
--
-- The gift recipient needs no column: recipient_name and recipient_phone are keys of the
-- order's shipping_address (jsonb), like every other part of the address.

alter table agent_orders.order_events drop constraint order_events_kind_check;
alter table agent_orders.order_events add constraint order_events_kind_check check (kind in
    ('created', 'status_changed', 'tracking_updated', 'note', 'cancelled',
     'problem_reported', 'problem_resolved'));

create table agent_orders.problem_reports (
    id uuid primary key default gen_random_uuid(),
    order_id uuid not null references agent_orders.orders (id) on delete cascade,
    owner_id uuid not null,
    kind text not null check (kind in ('not_received', 'damaged', 'wrong_item', 'other')),
    details text not null check (length(details) between 1 and 2000),
    status text not null default 'open' check (status in ('open', 'resolved')),
    resolution text check (resolution is null or length(resolution) between 1 and 2000),
    reported_by text not null check (reported_by in ('owner', 'agent', 'customer', 'system')),
    conversation_id text,
    tool_call_id text,
    created_at timestamptz not null default now(),
    resolved_at timestamptz,
    check ((status = 'resolved') = (resolved_at is not null and resolution is not null))
);
-- One open case per order and kind: reporting the same problem again finds it.
create unique index problem_reports_open_idx on agent_orders.problem_reports (order_id, kind)
    where status = 'open';
create index problem_reports_order_idx on agent_orders.problem_reports (order_id, created_at);
-- The owner's queue of open cases, oldest first.
create index problem_reports_owner_open_idx on agent_orders.problem_reports (owner_id, created_at)
    where status = 'open';

alter table agent_orders.problem_reports enable row level security;

do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy problem_reports_owner on agent_orders.problem_reports for all
                 using (owner_id = auth.uid()) with check (owner_id = auth.uid())';
    end if;
end
$$;
