"""Talking to payment providers: the Stripe adapter, and the runner that makes the calls the
payments service decided (`service.payments`) after their transaction committed."""
