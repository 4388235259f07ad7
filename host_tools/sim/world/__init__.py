"""The simulated world the meter lives in: grid, household loads, analog front end, metering chips at
register level, flash as a littlefs image in a file, and `World`, the time master that advances them."""
