"""Build the meter application: mpy-cross compile, littlefs image, build manifest (`meterkit build`)."""
