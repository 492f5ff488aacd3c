"""A shop with deliberate inconsistencies between its tracked events."""
