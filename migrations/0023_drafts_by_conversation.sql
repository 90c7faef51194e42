-- agent-orders: a conversation's drafts by kind and state. Drafting reads the conversation's
-- open order drafts and its orders confirmed in the last 30 minutes; with only
-- (agent_id, conversation_id) indexed, both read every draft the conversation ever made.
drop index agent_orders.drafts_conversation_idx;
create index drafts_conversation_idx on agent_orders.drafts
    (agent_id, conversation_id, kind, confirmed_at, expires_at);
