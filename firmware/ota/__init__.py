# Firmware updates in the field: signed offers, chunked download into the other OTA slot, the switch,
# and the new image's proof before it marks itself valid (docs/ota.md).
