-- agent-orders: payments. A store takes payment by Stripe Checkout (`stripe`) or records what
-- it was paid itself (`none`: on delivery, by invoice). Every movement of money, and every call
-- to Stripe that must follow a commit (a Checkout Session to create, a refund to make), is a
-- row of agent_orders.payments written in the transaction that decided it: state `pending`
-- until the call is made (at least once; Stripe's idempotency key is derived from the row).

alter table agent_orders.agents
    add column payment_mode text not null default 'none'
        check (payment_mode in ('none', 'stripe')),
    -- A Stripe Connect account the store is paid into (acct_...); null: the platform's own.
    add column stripe_account text check (stripe_account ~ '^acct_[A-Za-z0-9]{1,64}$'),
    -- Stripe lets a Checkout Session live 30 minutes to 24 hours.
    add column checkout_expiry_hours integer not null default 24
        check (checkout_expiry_hours between 1 and 24);

alter table agent_orders.orders drop constraint orders_payment_status_check;
alter table agent_orders.orders
    add constraint orders_payment_status_check check (payment_status in
        ('pending', 'paid', 'partially_refunded', 'refunded', 'failed')),
    add column amount_paid numeric(12,2) not null default 0 check (amount_paid >= 0),
    -- Refunds decided (pending at Stripe or made): never more than was paid.
    add column amount_refunded numeric(12,2) not null default 0,
    add constraint orders_refund_cap check (amount_refunded between 0 and amount_paid);

create table agent_orders.payments (
    id uuid primary key default gen_random_uuid(),
    order_id uuid not null references agent_orders.orders (id) on delete cascade,
    owner_id uuid not null,
    -- checkout: a Stripe Checkout Session for `amount`; payment: money received (recorded by
    -- the owner, or paid through Stripe outside a session we know); refund: money given back.
    kind text not null check (kind in ('checkout', 'payment', 'refund')),
    provider text not null check (provider in ('stripe', 'manual')),
    -- pending: the Stripe call is still to be made; open: a session waiting for the customer;
    -- succeeded; failed; expired; flagged: paid, but not what the order asked (owner to check).
    state text not null check (state in
        ('pending', 'open', 'succeeded', 'failed', 'expired', 'flagged')),
    amount numeric(12,2) not null check (amount > 0),
    currency text not null check (currency ~ '^[A-Z]{3}$'),
    -- The payment a refund gives money back from.
    parent_id uuid references agent_orders.payments (id),
    method text check (length(method) <= 100),
    reference text check (length(reference) <= 200),
    reason text check (length(reason) <= 500),
    stripe_account text,
    stripe_id text,
    stripe_payment_intent text,
    url text,
    expires_at timestamptz,
    paid_at timestamptz,
    attempts integer not null default 0,
    next_attempt_at timestamptz not null default now(),
    locked_until timestamptz,
    locked_by text,
    last_error text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    -- A Stripe refund says which payment it gives back from (its payment intent).
    check (kind <> 'refund' or provider = 'manual' or parent_id is not null)
);
create index payments_order_idx on agent_orders.payments (order_id, created_at);
create unique index payments_stripe_id_idx on agent_orders.payments (stripe_id)
    where stripe_id is not null;
create index payments_intent_idx on agent_orders.payments (stripe_payment_intent)
    where stripe_payment_intent is not null;
create index payments_due_idx on agent_orders.payments (next_attempt_at) where state = 'pending';

-- Each Stripe event is handled once: its id is recorded in the transaction that handles it.
create table agent_orders.stripe_events (
    id text primary key,
    type text not null,
    order_id uuid references agent_orders.orders (id) on delete set null,
    outcome text not null,
    received_at timestamptz not null default now()
);

insert into agent_orders.event_kinds (kind, webhook_type) values
    ('payment_succeeded', 'payment.succeeded'),
    ('payment_failed', 'payment.failed'),
    ('payment_refunded', 'payment.refunded'),
    ('payment_flagged', 'payment.flagged');
insert into agent_orders.customer_mail (webhook_type, mail_kind) values
    ('payment.succeeded', 'payment_receipt');

alter table agent_orders.payments enable row level security;
alter table agent_orders.stripe_events enable row level security;

do $$
begin
    if exists (select 1 from pg_proc p join pg_namespace n on n.oid = p.pronamespace
               where n.nspname = 'auth' and p.proname = 'uid') then
        execute 'create policy payments_owner on agent_orders.payments for select
                 using (owner_id = auth.uid())';
    end if;
end
$$;
