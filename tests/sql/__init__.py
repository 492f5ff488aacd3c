"""Tests of the SQL outbox, transactional tracking and the relay."""
