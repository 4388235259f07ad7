"""The simulated ESP32's eFuses: espefuse's own virtual eFuse controller (the one `espefuse --virt`
uses) kept in a file beside the flash file, so real `espefuse` commands burn them through the
simulated ROM (READ_REG/WRITE_REG on the eFuse controller's registers) and the ROM and the boot
model obey them: FLASH_CRYPT_CNT (flash encryption on when odd), BLOCK1 (the flash encryption key,
read-protected once burnt), UART_DOWNLOAD_DIS (no ROM download mode), JTAG_DISABLE, and secure boot
v2: ABS_DONE_1 with the public key digest in BLOCK2, obeyed on silicon revision 3 and later only.

The silicon revision (0, 1 or 3; `--chip-rev`) is set when the eFuse file is made: the revision bits
in BLOCK0 plus bit 31 of the APB date register, which only revision 3 silicon sets (so esptool and
espefuse read v0.0, v1.0 or v3.0 through the port, as from a board).

Like the silicon, the chip keeps using a read-protected key it no longer shows: the controller
stashes BLOCK1 when it is burnt into `<efuse file>.silicon`, which no protocol command can read;
only the boot model's encryption engine uses it."""
import os

from espefuse.efuse.esp32.emulate_efuse_controller import EmulateEfuseController
from espefuse.efuse.esp32.fields import EfuseMacField

_KEY_BLOCK = 1
_SB_BLOCK = 2
REVISIONS = (0, 1, 3)  # major revisions the model tells apart (v2 needs the APB bit, as v3 does)


class ChipEfuses(EmulateEfuseController):
    """espefuse's ESP32 eFuse emulation plus what the silicon does with the values."""

    def __init__(self, path, mac=None, revision=300):
        self.silicon_path = str(path) + ".silicon"
        new = not os.path.exists(path) or os.path.getsize(path) == 0
        super().__init__(efuse_file=str(path))
        if new:
            if revision // 100 not in REVISIONS:
                raise ValueError(f"chip revision v{revision // 100} is not modelled (use 0, 1 or 3)")
            self.set_chip_revision(revision)
            if mac is not None:
                crc = EfuseMacField.calc_crc(bytes(mac))
                self.direct_write_efuse(1, int.from_bytes(mac[2:6], "big"), block=0)
                self.direct_write_efuse(2, int.from_bytes(mac[0:2], "big") | (crc << 16), block=0)
            self.save_to_file()

    # ---- the silicon revision
    def get_major_chip_version(self):
        b0 = (self.read_efuse(3, block=0) >> 15) & 1
        b1 = (self.read_efuse(5, block=0) >> 20) & 1
        return {(0, 0): 0, (1, 0): 1, (1, 1): 3}.get((b0, b1), 0)

    @property
    def revision(self):
        """The silicon revision as esptool reports it (300 = v3.0)."""
        return self.get_major_chip_version() * 100 + self.get_minor_chip_version()

    def read_reg(self, addr):
        if addr == self.REGS.APB_CTL_DATE_ADDR:
            # bit 31 of the APB date register is the third revision bit: set on v3 silicon only
            return (self.REGS.APB_CTL_DATE_V << self.REGS.APB_CTL_DATE_S) if self.get_major_chip_version() >= 3 else 0
        return super().read_reg(addr)

    # ---- registers as the ROM serves them
    def covers(self, addr):
        base = self.REGS.DR_REG_EFUSE_BASE
        return base <= addr < base + self.REGS.EFUSE_MEM_SIZE

    def check_rd_protection_area(self):
        # the burn just copied the new values into the read registers: the key is in BLOCK1 now;
        # keep the silicon's copy before read protection hides it from every reader
        key = self.read_block(_KEY_BLOCK).bytes
        if any(key) and not os.path.exists(self.silicon_path):
            with open(self.silicon_path, "wb") as f:
                f.write(key)
        super().check_rd_protection_area()

    # ---- what the chip does with them
    def field(self, name):
        return self.read_field(name, bitstring=False)

    @property
    def flash_encryption(self):
        return bin(self.field("FLASH_CRYPT_CNT")).count("1") % 2 == 1

    @property
    def download_disabled(self):
        return bool(self.field("UART_DOWNLOAD_DIS"))

    @property
    def jtag_disabled(self):
        return bool(self.field("JTAG_DISABLE"))

    @property
    def key_read_protected(self):
        return bool(self.field("RD_DIS") & (1 << 0))  # RD_DIS bit 0: BLOCK1

    def flash_key(self):
        """The 32-byte key file content espsecure takes (what was given to `espefuse burn-key`), as the
        encryption engine holds it; None before a key was burnt."""
        try:
            raw = open(self.silicon_path, "rb").read()
        except FileNotFoundError:
            raw = self.read_block(_KEY_BLOCK).bytes
            if not any(raw):
                return None
        return raw  # espefuse's BLOCK1 bits read back as the key file's bytes

    def flash_crypt_config(self):
        return self.field("FLASH_CRYPT_CONFIG")

    @property
    def secure_boot_v2(self):
        """ABS_DONE_1 burnt on silicon that has secure boot v2 (revision 3 and later): the ROM then
        verifies the bootloader, and the bootloader the app, against the digest in BLOCK2. Earlier
        silicon ignores the bit, as esptool's own check does."""
        return bool(self.field("ABS_DONE_1")) and self.revision >= 300

    def secure_boot_digest(self):
        """The 32-byte public key digest in BLOCK2 as `espefuse burn-key-digest` burnt it (the bits read
        back in the order espefuse wrote the digest); None while the block is blank."""
        raw = self.read_block(_SB_BLOCK).bytes
        if not any(raw):
            return None
        return bytes(raw)[::-1]

    def summary(self):
        digest = self.secure_boot_digest()
        return {"flash_encryption": self.flash_encryption, "flash_crypt_cnt": self.field("FLASH_CRYPT_CNT"),
                "download_disabled": self.download_disabled, "jtag_disabled": self.jtag_disabled,
                "key_read_protected": self.key_read_protected, "key_burnt": self.flash_key() is not None,
                "chip_revision": self.revision, "secure_boot_v2": self.secure_boot_v2,
                "secure_boot_key_digest": digest.hex() if digest else None}

