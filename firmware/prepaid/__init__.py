# The prepaid core: energy debits the ledger, credit changes and their records, the monthly statement.
