"""Result codes of an update offer, the same words on the host (`meterkit ota inspect`) and on the meter
(firmware/ota/): each refusal has its own."""

ACCEPTED = "accepted"             # the offer is taken: download starts (or resumes)
BAD_PACKAGE = "bad_package"       # not a package of this format: magic, header or signature block unreadable
BAD_SIGNATURE = "bad_signature"   # not signed by a key the meter trusts (unknown key, or the signature fails)
WRONG_BOARD = "wrong_board"       # built for another board
DOWNGRADE = "downgrade"           # version below the meter's anti-rollback version
TOO_OLD = "too_old"               # the meter runs a version below the package's min_version
TOO_BIG = "too_big"               # the image does not fit the OTA slot
SAME_VERSION = "already_installed"  # the meter already runs this version
BUSY = "busy"                     # another update is in progress on the meter
HASH_MISMATCH = "hash_mismatch"   # the downloaded image does not hash to the signed SHA-256
BAD_CHUNK = "bad_chunk"           # a chunk failed its check (hash, length, offset): asked again
BAD_IMAGE = "bad_image"           # the image is not an app image for this chip
# the meter's alone (firmware/ota/updater.py), listed so that every word of docs/ota.md's table is here
NO_SLOT = "no_ota_slot"           # the meter has no other OTA slot to write into
DUPLICATE = "duplicate"           # a chunk behind the bytes already written: ignored
OUT_OF_ORDER = "out_of_order"     # a chunk ahead of the offset expected: ignored, asked again
ABANDONED = "abandoned"           # no chunk for 6 hours: the download is given up

REFUSALS = (BAD_PACKAGE, BAD_SIGNATURE, WRONG_BOARD, DOWNGRADE, TOO_OLD, TOO_BIG, SAME_VERSION, BUSY,
            HASH_MISMATCH, BAD_IMAGE, NO_SLOT)
