"""Sealing a board on the factory line with esptool's own tools, host-generated key (ESP32 flash
encryption, release mode):

1. `espsecure` makes a fresh AES-256 key for this board (never stored: only its SHA-256 goes in the
   manufacturing record, so the record ties the board to its key without holding it);
2. `espsecure encrypt-flash-data` encrypts the firmware (at 0x1000) and the file system (at its
   partition) on the host, with the ESP32's address tweak;
3. esptool writes the ciphertext (plain ROM writes, verified by MD5 of what was sent);
4. `espefuse` burns, in three batches in Espressif's order for "flash encryption and secure boot v2
   enabled externally" (flash encryption first, secure boot second, download mode last):
   a. flash encryption: the key into BLOCK1 (read- and write-protected), FLASH_CRYPT_CONFIG = 0xF,
      FLASH_CRYPT_CNT = 1 (odd: encryption on), DISABLE_DL_ENCRYPT / DISABLE_DL_DECRYPT /
      DISABLE_DL_CACHE, JTAG_DISABLE;
   b. with a secure boot key (silicon revision 3): the public key digest into BLOCK2 (`burn-key-digest`:
      write-protected, left readable for the ROM), ABS_DONE_1, and the write protection of RD_DIS so
      nothing can ever read-protect BLOCK2 (a ROM that cannot read the digest boots nothing). This must
      come after (a): once RD_DIS is write-protected, BLOCK1 could no longer be read-protected;
   c. UART_DOWNLOAD_DIS (from the next reset the ROM has no download mode: nothing can read the flash
      or burn an eFuse over UART again), so it comes last.

With secure boot the images are signed before they are encrypted (host_tools/flash/secureboot.py): the
ROM decrypts through the cache and then verifies the plaintext's signature."""
import hashlib
import io

import espsecure
from espefuse.efuse_interface import init_commands

from host_tools.errors import DeviceError, UsageError
from host_tools.flash.crypt import FlashCipher

CRYPT_CONFIG = 0xF
SEAL_EFUSES = {"FLASH_CRYPT_CONFIG": CRYPT_CONFIG, "FLASH_CRYPT_CNT": 1, "DISABLE_DL_ENCRYPT": 1,
               "DISABLE_DL_DECRYPT": 1, "DISABLE_DL_CACHE": 1, "JTAG_DISABLE": 1, "UART_DOWNLOAD_DIS": 1}


class _KeyFile(io.BytesIO):
    name = "flash-encryption-key"


def new_key():
    """A fresh 256-bit flash encryption key from espsecure (the OS's CSPRNG)."""
    f = _KeyFile()
    make = espsecure.generate_flash_encryption_key
    getattr(make, "callback", make)(256, f)  # the CLI command's own function, as a library call
    key = f.getvalue()
    if len(key) != 32:
        raise UsageError("espsecure made a key of the wrong length", hint="check the esptool version")
    return key


def check_sealable(plan):
    """Sealing needs the file system in an encrypted partition of the table: the one MicroPython makes
    past the last partition is not encrypted, and the meter's keys live there."""
    if plan.files is None:
        return
    vfs = next((p for p in plan.firmware.partitions if p.name in ("vfs", "ffat") and p.type == 1), None)
    if vfs is None or not vfs.encrypted:
        raise UsageError("refusing to seal: the firmware's partition table has no encrypted `vfs` partition, so the "
                         "meter's keys would sit in clear flash under flash encryption",
                         hint="build the firmware with the board's partitions.csv (boards/<board>/partitions.csv)")


def encrypt_writes(writes, key, plan):
    """The same writes, encrypted where the chip will decrypt: the firmware (bootloader, table, app) and
    partitions flagged encrypted. Returns [(offset, bytes, label)]."""
    cipher = FlashCipher(key, CRYPT_CONFIG)
    enc_parts = [p for p in plan.firmware.partitions if p.encrypted]
    out = []
    for off, data, label in writes:
        if label == "firmware" or any(p.offset == off for p in enc_parts):
            out.append((off, cipher.encrypt_padded(off, data), label))
        else:
            out.append((off, data, label))
    return out


class _PemFile(io.BytesIO):
    name = "secure-boot-signing-key.pem"


def _burn_secure_boot(ef, pem):
    """One batch: the public key digest into BLOCK2 (write-protected, readable), ABS_DONE_1, and RD_DIS
    write-protected so BLOCK2 can never be read-protected."""
    ef.use_batch_mode()
    ef.burn_key_digest(_PemFile(pem))
    ef.burn_efuse({"ABS_DONE_1": 1})
    ef.write_protect_efuse(["RD_DIS"])
    ef.burn_all(check_batch_mode=True)


def enable_secure_boot_on_chip(chip_efuses, pem):
    """Secure boot v2 on a simulated chip's eFuses directly (no port), with espefuse's own commands as
    `espefuse --virt` runs them: for chips the tests make without a factory line (OTA)."""
    from host_tools.flash.secureboot import quiet_espsecure
    with quiet_espsecure(), init_commands(esp=chip_efuses, do_not_confirm=True) as ef:
        _burn_secure_boot(ef, pem)


def burn(esp, key, keep_download_mode=False, secure_boot_pem=None):
    """Burn the sealing eFuses through the connected ROM with espefuse as a library, in the order the
    module docstring gives. Returns the eFuse values read back (no key material: BLOCK1 reads as zeros
    once protected; BLOCK2 holds only the public key's digest). keep_download_mode leaves
    UART_DOWNLOAD_DIS alone (silicon before revision 3 does not have it). secure_boot_pem: the signing
    key's public half (PEM bytes; a private key works too) whose digest is burnt with ABS_DONE_1."""
    fuses = dict(SEAL_EFUSES)
    del fuses["UART_DOWNLOAD_DIS"]
    try:
        with init_commands(esp=esp, do_not_confirm=True, batch_mode=True) as ef:
            ef.burn_key(["flash_encryption"], [_KeyFile(key)])
            ef.burn_efuse(fuses)
            ef.burn_all(check_batch_mode=True)
            if secure_boot_pem is not None:
                _burn_secure_boot(ef, secure_boot_pem)
            if not keep_download_mode:
                ef.use_batch_mode()
                ef.burn_efuse({"UART_DOWNLOAD_DIS": 1})
                ef.burn_all(check_batch_mode=True)
            out = {name: ef.efuses[name].get() for name in ("FLASH_CRYPT_CNT", "FLASH_CRYPT_CONFIG", "JTAG_DISABLE",
                                                             "UART_DOWNLOAD_DIS", "ABS_DONE_1")}
            out["RD_DIS_write_protected"] = not ef.efuses["RD_DIS"].is_writeable()
            return out
    except Exception as e:  # espefuse raises FatalError, or SystemExit when it refuses a burn
        raise DeviceError(f"burning the sealing eFuses failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
                          hint="the board may be half sealed: set it aside and check it with `espefuse summary`") from None


def key_fingerprint(key):
    return hashlib.sha256(b"meterkit flash key\0" + key).hexdigest()
