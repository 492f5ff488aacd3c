from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Customer:
    id: str
    email: str


@dataclass
class Order:
    id: str
    total: float
    currency: str = "EGP"
