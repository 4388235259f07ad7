"""`meterkit sim chaos`: a simulated fleet living through days in which everything goes wrong at random
(issue 19). `faults` is the seeded fault schedule (kinds plug in by name), `provider` the payment
provider in virtual time, `checks` the independent checks, `run` the fleet and its loop, `cli` the verb."""
