-- "Where are my orders?" for a customer the host verified by phone: orders are matched on
-- the digits of the phone number, however it was written ("+1 (555) 010-0100").
create index orders_phone_digits_idx on agent_orders.orders
    (agent_id, (regexp_replace(customer_phone, '[^0-9]', '', 'g')), created_at desc)
    where customer_phone is not null;
