-- agent-orders: the outbox is kept for a retention period (AGENT_ORDERS_EVENT_RETENTION_DAYS),
-- then trimmed by the deliverers; the order history (order_events) is kept for good.
-- Trimming walks the outbox by age, and deleting an outbox row removes its deliveries: both
-- need an index, or each trimmed event would scan the deliveries.
create index outbox_created_idx on agent_orders.outbox (created_at);
create index webhook_deliveries_event_idx on agent_orders.webhook_deliveries (event_id);
