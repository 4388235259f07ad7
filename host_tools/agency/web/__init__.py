"""The agency's web side: `app.create_app(agency)` builds the Starlette app; routes per resource live in
`customer.py`, `purchases.py`, `operator.py` and `callbacks.py`."""
