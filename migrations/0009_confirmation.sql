-- Confirmation that does not depend on counting chat turns.
--
-- Each agent chooses how a customer's final yes reaches the server: `turns` (the host counts
-- customer messages; the default, and what hosts running their own loop do), `elicitation`
-- (the MCP client asks the human itself) or `page` (only the trusted confirmation page).
alter table agent_orders.agents
    add column confirmation text not null default 'turns'
    constraint agents_confirmation_check check (confirmation in ('turns', 'elicitation', 'page'));

-- Every draft has a confirmation page, `/confirm/{token}`. The token is derived from the
-- instance secret and the draft id; only its SHA-256 is kept, to find the draft again.
alter table agent_orders.drafts add column confirm_digest bytea;
create unique index drafts_confirm_digest_idx on agent_orders.drafts (confirm_digest)
    where confirm_digest is not null;
