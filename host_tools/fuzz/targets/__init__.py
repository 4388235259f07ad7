"""The fuzz targets, one module each: the meter's doors (service port, keypad, SMS, MQTT payloads) on
the whole firmware app, the head-end's (uplink ingest, provisioning CSV), the agency's customer CSV and
the `meterkit` verbs' arguments."""
