"""The cellular modem at AT-command level: a shared core (AT parser, state, TCP bridge, SMS store) and one
module per SIMCom dialect; the SMS centre behind it and the PDU codec."""
