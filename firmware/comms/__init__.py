"""The meter's cellular side: AT modem engine and dialects, link supervisor, MQTT client, the
authenticated meter <-> head-end protocol, the persistent uplink queue and SMS (see docs/protocol.md)."""
