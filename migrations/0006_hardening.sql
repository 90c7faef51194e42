-- agent-orders: what a security review asked for.
--
-- 1. Whether the order's email/phone came from the host (a verified customer) or was typed
--    into the chat: only verified contacts make an order someone's by email or phone. Rows
--    from before are unknown, so they count as unverified (they stay their conversation's).
-- 2. A version in every order's tracking token, so an owner can revoke one order's links.
--    Version 1 is the token links handed out so far carry.
-- 3. Whether an event's note is for the customer's eyes (full view only). Owner notes are
--    internal unless marked; a customer's own words (a cancellation reason) are theirs.
-- 4. Supabase: every policy tied to the agent's owner, and the order tables read-only for
--    the REST roles: orders change only through the service's state machine.

alter table agent_orders.orders
    add column contact_verified boolean not null default false,
    add column tracking_token_version integer not null default 1
        check (tracking_token_version >= 1);

alter table agent_orders.order_events
    add column note_visible boolean not null default false;

update agent_orders.order_events set note_visible = true
where note is not null
  and (actor in ('agent', 'customer') or (kind = 'note' and customer_visible));

-- TRUNCATE is not subject to Row Level Security: refuse it to the REST roles outright, in case
-- a project grants them everything on the schema (as Supabase's guide for custom schemas does).
create function agent_orders.refuse_rest_truncate() returns trigger
language plpgsql set search_path = pg_catalog as $$
begin
    if current_user::text in ('anon', 'authenticated') then
        raise exception 'agent_orders.% cannot be truncated by %', tg_table_name, current_user
            using errcode = 'insufficient_privilege';
    end if;
    return null;
end
$$;

do $$
declare
    t text;
begin
    foreach t in array array['orders', 'order_events', 'order_daily_stats', 'drafts',
                             'api_keys', 'idempotency_keys', 'instance'] loop
        execute format('create trigger %I before truncate on agent_orders.%I'
                       ' for each statement execute function agent_orders.refuse_rest_truncate()',
                       t || '_no_rest_truncate', t);
    end loop;
end
$$;

-- Where the REST roles exist already: no writes to what the state machine owns.
do $$
declare
    r text;
begin
    foreach r in array array['anon', 'authenticated'] loop
        if exists (select 1 from pg_roles where rolname = r) then
            execute format(
                'revoke insert, update, delete, truncate on agent_orders.orders,'
                ' agent_orders.order_events, agent_orders.order_daily_stats, agent_orders.drafts,'
                ' agent_orders.idempotency_keys, agent_orders.instance from %I', r);
        end if;
    end loop;
end
$$;

-- On Supabase (an `auth.uid()` exists): a row is an owner's when its agent is theirs. Orders,
-- their events and the roll-up are read-only (SELECT policies only: with RLS on, every other
-- command finds no policy and is refused, whatever the grants).
do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        drop policy if exists orders_owner on agent_orders.orders;
        drop policy if exists order_events_owner on agent_orders.order_events;
        drop policy if exists order_daily_stats_owner on agent_orders.order_daily_stats;
        drop policy if exists products_owner on agent_orders.products;
        execute 'create policy orders_owner on agent_orders.orders for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))';
        execute 'create policy order_events_owner on agent_orders.order_events for select
                 using (exists (select 1 from agent_orders.orders o
                                join agent_orders.agents a on a.id = o.agent_id
                                where o.id = order_id and a.owner_id = (select auth.uid())))';
        execute 'create policy order_daily_stats_owner on agent_orders.order_daily_stats
                 for select
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))';
        execute 'create policy products_owner on agent_orders.products for all
                 using (exists (select 1 from agent_orders.agents a
                                where a.id = agent_id and a.owner_id = (select auth.uid())))
                 with check (exists (select 1 from agent_orders.agents a
                                     where a.id = agent_id and a.owner_id = (select auth.uid())))';
    end if;
end
$$;
