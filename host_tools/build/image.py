"""Make and read littlefs images laid out exactly as the ESP32 port mounts its `vfs` partition."""
import littlefs

from host_tools.errors import UsageError

NAME_MAX = 255


def make_image(files, block_size, block_count):
    """Return image bytes holding `files` ({"/dir/name": bytes}). Directories are created as needed.
    Files go in sorted order and littlefs stores no timestamps, so equal input gives equal bytes."""
    fs = littlefs.LittleFS(block_size=block_size, block_count=block_count, name_max=NAME_MAX, mount=False)
    fs.format()
    fs.mount()
    made = set()
    try:
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for i in range(1, len(parts)):
                d = "/" + "/".join(parts[:i])
                if d not in made:
                    fs.mkdir(d)
                    made.add(d)
            with fs.open(path, "wb") as f:
                f.write(files[path])
    except littlefs.LittleFSError as e:
        if e.code == littlefs.LittleFSError.Error.LFS_ERR_NOSPC:
            total = sum(len(v) for v in files.values())
            raise UsageError(
                f"the application ({total} bytes) does not fit a {block_size * block_count}-byte partition",
                hint="shrink the firmware or enlarge the board's vfs partition in board.json",
            ) from e
        raise
    fs.unmount()
    return bytes(fs.context.buffer)


def read_image(image, block_size):
    """Return {"/path": bytes} for every file in a littlefs image (bytes)."""
    ctx = littlefs.UserContext(buffer=bytearray(image))
    fs = littlefs.LittleFS(context=ctx, block_size=block_size, block_count=len(image) // block_size,
                           name_max=NAME_MAX, mount=False)
    fs.mount()
    out = {}
    for root, _dirs, names in fs.walk("/"):
        for name in names:
            p = (root.rstrip("/") + "/" + name)
            with fs.open(p, "rb") as f:
                out[p] = f.read()
    fs.unmount()
    return out
