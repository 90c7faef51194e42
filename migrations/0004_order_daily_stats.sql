-- agent-orders: a daily roll-up of orders for the owner's stats summary.
--
-- Counting a store's orders on every dashboard load reads every order (hundreds of
-- milliseconds at a million). Instead, orders are counted and summed per owner, agent,
-- UTC day, status and currency here, and the summary reads a few thousand rows.
-- Statement triggers on `orders` keep it exact for every writer (the service, an owner
-- editing rows in the Supabase table editor, a bulk COPY), in the writer's transaction.

create table agent_orders.order_daily_stats (
    owner_id uuid not null,
    agent_id uuid not null,
    day date not null,
    status text not null,
    currency text not null,
    orders bigint not null,
    revenue numeric(16,2) not null,
    primary key (owner_id, agent_id, day, status, currency)
);

-- Adds the per-key deltas of one statement. Keys are upserted in sorted order, so two
-- transactions touching the same keys lock them in the same order and never deadlock.
create function agent_orders.order_daily_stats_apply() returns trigger
language plpgsql security definer set search_path = pg_catalog, agent_orders as $$
begin
    if tg_op = 'INSERT' then
        insert into order_daily_stats as s
            (owner_id, agent_id, day, status, currency, orders, revenue)
        select owner_id, agent_id, (created_at at time zone 'UTC')::date, status, currency,
               count(*), sum(total)
        from new_rows group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5
        on conflict (owner_id, agent_id, day, status, currency) do update
            set orders = s.orders + excluded.orders, revenue = s.revenue + excluded.revenue;
    elsif tg_op = 'DELETE' then
        update order_daily_stats s set orders = s.orders - d.n, revenue = s.revenue - d.amount
        from (select owner_id, agent_id, (created_at at time zone 'UTC')::date as day, status,
                     currency, count(*) as n, sum(total) as amount
              from old_rows group by 1, 2, 3, 4, 5) d
        where (s.owner_id, s.agent_id, s.day, s.status, s.currency)
            = (d.owner_id, d.agent_id, d.day, d.status, d.currency);
    else
        -- Only rows whose counted columns changed: -1 on the old key, +1 on the new one.
        insert into order_daily_stats as s
            (owner_id, agent_id, day, status, currency, orders, revenue)
        select k.owner_id, k.agent_id, k.day, k.status, k.currency, sum(k.n), sum(k.amount)
        from new_rows n join old_rows o on o.id = n.id
        cross join lateral (values
            (n.owner_id, n.agent_id, (n.created_at at time zone 'UTC')::date, n.status,
             n.currency, 1, n.total),
            (o.owner_id, o.agent_id, (o.created_at at time zone 'UTC')::date, o.status,
             o.currency, -1, -o.total)
        ) as k (owner_id, agent_id, day, status, currency, n, amount)
        where (o.owner_id, o.agent_id, o.created_at, o.status, o.currency, o.total)
            is distinct from (n.owner_id, n.agent_id, n.created_at, n.status, n.currency, n.total)
        group by 1, 2, 3, 4, 5 order by 1, 2, 3, 4, 5
        on conflict (owner_id, agent_id, day, status, currency) do update
            set orders = s.orders + excluded.orders, revenue = s.revenue + excluded.revenue;
    end if;
    return null;
end
$$;

create function agent_orders.order_daily_stats_clear() returns trigger
language plpgsql security definer set search_path = pg_catalog, agent_orders as $$
begin
    truncate order_daily_stats;
    return null;
end
$$;

create trigger orders_daily_stats_insert after insert on agent_orders.orders
    referencing new table as new_rows
    for each statement execute function agent_orders.order_daily_stats_apply();
create trigger orders_daily_stats_update after update on agent_orders.orders
    referencing old table as old_rows new table as new_rows
    for each statement execute function agent_orders.order_daily_stats_apply();
create trigger orders_daily_stats_delete after delete on agent_orders.orders
    referencing old table as old_rows
    for each statement execute function agent_orders.order_daily_stats_apply();
create trigger orders_daily_stats_truncate after truncate on agent_orders.orders
    for each statement execute function agent_orders.order_daily_stats_clear();

insert into agent_orders.order_daily_stats
    (owner_id, agent_id, day, status, currency, orders, revenue)
select owner_id, agent_id, (created_at at time zone 'UTC')::date, status, currency,
       count(*), sum(total)
from agent_orders.orders group by 1, 2, 3, 4, 5;

alter table agent_orders.order_daily_stats enable row level security;

do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy order_daily_stats_owner on agent_orders.order_daily_stats
                 for select using (owner_id = auth.uid())';
    end if;
end
$$;
