"""The network beyond the modem: the stepped in-process MQTT broker and the head-end's client on it."""
