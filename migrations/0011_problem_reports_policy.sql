-- agent-orders: the problem reports' Supabase policy, like the order tables' (0006): tied to
-- the owner of the order's agent, and read-only for the REST roles (cases are opened by the
-- agent's tool and resolved through the owner API, which record events alongside).

do $$
begin
    if exists (select 1 from pg_roles where rolname = 'anon') then
        execute 'revoke insert, update, delete, truncate on agent_orders.problem_reports from anon';
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
        execute 'revoke insert, update, delete, truncate on agent_orders.problem_reports'
                ' from authenticated';
    end if;
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        drop policy if exists problem_reports_owner on agent_orders.problem_reports;
        execute 'create policy problem_reports_owner on agent_orders.problem_reports for select
                 using (exists (select 1 from agent_orders.orders o
                                join agent_orders.agents a on a.id = o.agent_id
                                where o.id = order_id and a.owner_id = (select auth.uid())))';
    end if;
end
$$;

create trigger problem_reports_no_rest_truncate before truncate on agent_orders.problem_reports
    for each statement execute function agent_orders.refuse_rest_truncate();
