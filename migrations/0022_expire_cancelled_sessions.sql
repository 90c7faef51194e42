-- agent-orders: a cancelled order's open Checkout Session is closed at Stripe too, so the
-- customer can no longer pay it. State `expiring`: the session is still open at Stripe and
-- the call that expires it is still to be made (by the payments runner, like `pending`).
alter table agent_orders.payments
    drop constraint payments_state_check,
    add constraint payments_state_check check (state in
        ('pending', 'open', 'expiring', 'succeeded', 'failed', 'expired', 'flagged'));

drop index agent_orders.payments_due_idx;
create index payments_due_idx on agent_orders.payments (next_attempt_at)
    where state in ('pending', 'expiring');
