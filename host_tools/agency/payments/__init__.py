"""Payments: one provider interface (`provider.Provider`), a client for mobile-money providers with signed
callbacks (`mobilemoney.MobileMoney`), a simulated provider that runs as its own HTTP service
(`simprovider`), and the payment lifecycle that turns each confirmed payment into exactly one vend and
one credit on the meter (`lifecycle.Payments`)."""
