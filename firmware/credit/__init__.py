"""Prepaid credit: UTC calendar (`civil`), tariff schedule (`tariff`), the ledger (`ledger`) and the
friendly-credit and warning policy (`policy`). Import the modules themselves; see docs/credit.md."""
