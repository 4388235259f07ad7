"""`meterkit sim esp32 --link PATH --flash FILE [--tcp PORT] [--json]`: one simulated ESP32 in ROM
download mode, until SIGINT/SIGTERM."""
import json
import signal
import sys
import threading

from host_tools.flash.layout import parse_flash_size
from host_tools.flash.rom import CHIP_MAGIC
from host_tools.flash.rom_link import start_rom


def register_sim(simsub):
    p = simsub.add_parser("esp32", help="a simulated ESP32 ROM bootloader that esptool can flash")
    p.add_argument("--link", help="symlink to create for the board's pty (the port to give esptool)")
    p.add_argument("--flash", required=True, help="flash file (created 0xFF-filled if missing; its eFuses in FILE.efuse)")
    p.add_argument("--flash-size", default="4MB", help="the module's flash: 4MB, 8MB or 16MB (default 4MB)")
    p.add_argument("--tcp", type=int, default=None, help="serve on 127.0.0.1:PORT instead of a pty (0: any)")
    p.add_argument("--index", type=int, default=0, help="board number: sets the MAC (24:0a:c4:..)")
    p.add_argument("--chip", choices=sorted(CHIP_MAGIC), default="esp32", help="fault: claim another chip")
    p.add_argument("--chip-rev", type=int, choices=(0, 1, 3), default=None,
                   help="silicon revision of a new chip (default 3; secure boot v2 needs 3); an existing chip keeps its own")
    p.add_argument("--die-after-blocks", type=int, default=None, help="fault: go silent after N blocks")
    p.add_argument("--corrupt-block", type=int, default=None, help="fault: flip a bit in data block N")
    p.add_argument("--boot", action="store_true",
                   help="power the chip up instead of holding it in download mode: boot what is in --flash as an "
                        "ESP32 would (image checks, eFuses, encryption, file system) and run the meter; its "
                        "UART0 is the pty at --link (the same as `meterkit sim start --flash FILE`)")
    p.add_argument("--json", action="store_true", help="print one JSON line once ready")
    p.set_defaults(func=handler)


def handler(args):
    from host_tools.errors import UsageError
    if args.boot:
        import argparse

        from host_tools.sim.commands import cmd_start
        return cmd_start(argparse.Namespace(flash=args.flash, flash_offset=None, link=args.link, json=args.json,
                                            seed=args.index + 1, profile="household", afe="typical", grid="stable",
                                            speed=1.0, period=1, workdir=None, heap=None, frozen=False,
                                            meters=1, headend=None, broker=None, keystore=None))
    if args.link is None and args.tcp is None:
        raise UsageError("no port to serve on", hint="give --link PATH (a pty) or --tcp PORT")
    link = start_rom(args.flash, link=None if args.tcp is not None else args.link, tcp_port=args.tcp,
                     index=args.index, chip=args.chip, die_after_blocks=args.die_after_blocks,
                     corrupt_block=args.corrupt_block, flash_size=parse_flash_size(args.flash_size),
                     chip_rev=args.chip_rev)
    done = threading.Event()
    previous = {s: signal.signal(s, lambda *_: done.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        ready = {"port": link.port, "flash": args.flash, "mac": link.rom.mac.hex(":"),
                 "flash_size": link.rom.flash.size, "efuses": link.rom.efuses.summary()}
        if args.json:
            sys.stdout.write(json.dumps(ready, sort_keys=True) + "\n")
        else:
            sys.stdout.write(f"simulated ESP32 on {link.port} (flash {args.flash}); Ctrl-C to stop\n")
        sys.stdout.flush()
        while not done.wait(0.5):
            pass
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        link.stop()
    return 0
