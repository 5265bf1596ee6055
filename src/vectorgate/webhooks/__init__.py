"""Webhook endpoints (SPEC 10.1): where an organization's events are delivered."""
