"""Where things go in a board's flash (from board.json), checks made before a board is touched, and
reading the vfs partition back out of a flash file."""
import json
from pathlib import Path

from host_tools import paths
from host_tools.errors import UsageError


def board_info(board):
    """`board` is a name under boards/ or an already-parsed board.json dict."""
    if isinstance(board, dict):
        return board
    try:
        d = paths.board_dir(board)
    except FileNotFoundError as e:
        raise UsageError(str(e), hint="pass --board with one of the names listed") from None
    return json.loads((d / "board.json").read_text())


def plan_writes(board, firmware, fs_image=None):
    """Return [(offset, bytes, label)] to write, after checking everything fits where it goes."""
    info = board_info(board)
    fl = info["flash"]
    fw = Path(firmware).read_bytes() if not isinstance(firmware, (bytes, bytearray)) else bytes(firmware)
    writes = [(fl["firmware_offset"], fw, "firmware")]
    fw_room = fl["vfs_offset"] - fl["firmware_offset"]
    if len(fw) > fw_room:
        raise UsageError(f"firmware is {len(fw)} bytes but only {fw_room} fit below the vfs partition "
                         f"at {fl['vfs_offset']:#x}", hint="use a smaller MicroPython build or change the layout")
    if fs_image is not None:
        img = Path(fs_image).read_bytes() if not isinstance(fs_image, (bytes, bytearray)) else bytes(fs_image)
        if len(img) > fl["vfs_size"]:
            raise UsageError(f"file system image is {len(img)} bytes but the vfs partition holds {fl['vfs_size']}",
                             hint=f"rebuild it with `meterkit build --board {info.get('name', '...')}`")
        if len(img) % fl["block_size"]:
            raise UsageError(f"file system image is {len(img)} bytes, not a whole number of "
                             f"{fl['block_size']}-byte blocks", hint="use the fs.img that `meterkit build` wrote")
        writes.append((fl["vfs_offset"], img, "fs"))
    return writes


def vfs_image_from_flash(flash_file, board):
    """The vfs partition's bytes out of a flash file (what `meterkit flash` wrote to a simulated
    ESP32), so the simulator can boot a meter from exactly what was flashed."""
    fl = board_info(board)["flash"]
    with open(flash_file, "rb") as f:
        f.seek(fl["vfs_offset"])
        data = f.read(fl["vfs_size"])
    if len(data) != fl["vfs_size"]:
        raise UsageError(f"{flash_file} ends before the vfs partition does",
                         hint="give the whole flash file (4 MB)")
    return data
