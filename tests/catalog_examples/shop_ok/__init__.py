"""A consistent shop: every site of an event sends the same keys with the same types."""
