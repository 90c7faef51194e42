-- agent-orders: event kinds as data. Each capability (payments, edits, returns, shipments)
-- registers the order-event kinds it writes, the webhook type each goes out as, and the
-- customer mail a webhook type queues, with inserts in its own migration: no migration has
-- to re-create a shared check constraint or the outbox trigger to add a kind.

create table agent_orders.event_kinds (
    kind text primary key check (kind ~ '^[a-z][a-z_]{0,39}$'),
    -- null: the webhook type follows agent_orders.webhook_type (`order.<kind>` for new kinds).
    webhook_type text check (webhook_type ~ '^[a-z]+(\.[a-z_]+)+$')
);
insert into agent_orders.event_kinds (kind) values
    ('created'), ('status_changed'), ('tracking_updated'), ('note'), ('cancelled'),
    ('problem_reported'), ('problem_resolved');

alter table agent_orders.order_events drop constraint order_events_kind_check;
alter table agent_orders.order_events add constraint order_events_kind_fkey
    foreign key (kind) references agent_orders.event_kinds (kind);

-- The customer mail a webhook type queues (for customer-visible events of an order with an
-- email); the mail kind names its subject and text in the mailer.
create table agent_orders.customer_mail (
    webhook_type text primary key,
    mail_kind text not null unique check (mail_kind ~ '^[a-z][a-z_]{0,39}$')
);
insert into agent_orders.customer_mail (webhook_type, mail_kind) values
    ('order.created', 'confirmation'), ('order.shipped', 'shipped'),
    ('order.delivered', 'delivered'), ('order.cancelled', 'cancelled');

alter table agent_orders.mail_messages drop constraint mail_messages_kind_check;
alter table agent_orders.mail_messages add constraint mail_messages_kind_fkey
    foreign key (kind) references agent_orders.customer_mail (mail_kind);

create or replace function agent_orders.outbox_fan_out() returns trigger
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
    select coalesce(k.webhook_type, webhook_type(new.kind, new.to_status)) into t
    from event_kinds k where k.kind = new.kind;
    insert into outbox (event_id, owner_id, agent_id, order_id, type, order_snapshot)
    values (new.id, o.owner_id, o.agent_id, o.id, t, to_jsonb(o));
    insert into webhook_deliveries (endpoint_id, event_id, msg_id, type)
    select e.id, new.id, 'msg_' || replace(gen_random_uuid()::text, '-', ''), t
    from webhook_endpoints e
    where e.owner_id = o.owner_id and e.enabled
      and (e.agent_id is null or e.agent_id = o.agent_id)
      and (cardinality(e.event_types) = 0 or t = any(e.event_types));
    select m.mail_kind into mail_kind from customer_mail m where m.webhook_type = t;
    if mail_kind is not null and new.customer_visible and o.customer_email is not null then
        insert into mail_messages (event_id, owner_id, order_id, kind, to_address)
        values (new.id, o.owner_id, o.id, mail_kind, o.customer_email);
    end if;
    -- Wakes idle deliverers at commit (nothing is sent if the transaction rolls back).
    perform pg_notify('agent_orders_outbox', '');
    return null;
end
$$;

-- Reference data: readable by the REST roles' owners like any table here, written only by
-- migrations.
alter table agent_orders.event_kinds enable row level security;
alter table agent_orders.customer_mail enable row level security;
do $$
begin
    if exists (select 1 from pg_roles where rolname = 'anon') then
        execute 'revoke insert, update, delete, truncate on agent_orders.event_kinds,'
                ' agent_orders.customer_mail from anon';
    end if;
    if exists (select 1 from pg_roles where rolname = 'authenticated') then
        execute 'revoke insert, update, delete, truncate on agent_orders.event_kinds,'
                ' agent_orders.customer_mail from authenticated';
    end if;
end
$$;
