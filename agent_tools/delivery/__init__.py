"""Delivery of what the outbox holds: signed webhooks and customer emails, by any number of
deliverers sharing the work through PostgreSQL."""
