"""The Debian packages the tests and benchmarks need beside the venv, in one list. `make test` and
`.ci/run` call this first: as root it installs what is missing (apt-get), otherwise it stops with the
one command to run. Standard library only: it runs before the venv exists.

    python3 -m host_tools.sysdeps [--check]"""
import os
import shutil
import subprocess
import sys

# Where Debian (and its multiarch layout) puts SoftHSM2's PKCS#11 library; host_tools.keys.settings knows more.
SOFTHSM_PATHS = ("/usr/lib/softhsm/libsofthsm2.so", "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
                 "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so")

# (package, how to tell it is there, what needs it)
PACKAGES = [
    ("mosquitto", lambda: _cmd("mosquitto") or os.path.exists("/usr/sbin/mosquitto"),
     "the head-end and remote top-up tests (a real broker)"),
    ("chromium", lambda: _cmd("chromium"), "the agency's browser tests (driven by Playwright)"),
    ("fonts-noto-core", lambda: os.path.isdir("/usr/share/fonts/truetype/noto"),
     "Arabic glyphs in the agency's browser tests and screenshots"),
    ("softhsm2", lambda: any(os.path.exists(p) for p in SOFTHSM_PATHS),
     "the vending keys' PKCS#11 module (meterkit keys, vending, provisioning, the head-end)"),
    ("nodejs", lambda: _cmd("node"), "the 32-bit MicroPython (npm's WebAssembly port) of the memory bench"),
    ("npm", lambda: _cmd("npm"), "installing that port from package-lock.json"),
    ("postgresql", lambda: any(os.path.exists("/usr/lib/postgresql/%s/bin/initdb" % v) for v in
                               (os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql") else [])),
     "the head-end store on PostgreSQL (tests start a private server with initdb + pg_ctl)"),
]


def _cmd(name):
    return shutil.which(name) is not None or os.path.exists("/usr/bin/" + name) or os.path.exists("/usr/sbin/" + name)


def missing():
    return [(name, why) for name, present, why in PACKAGES if not present()]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    need = missing()
    if not need:
        return 0
    names = " ".join(n for n, _ in need)
    for n, why in need:
        sys.stderr.write("missing Debian package %s: %s\n" % (n, why))
    if "--check" in argv or os.geteuid() != 0:
        sys.stderr.write("run:  apt-get update && apt-get install -y %s\n" % names)
        return 1
    sys.stderr.write("installing %s ...\n" % names)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq"] + [n for n, _ in need], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    still = missing()
    if still:
        sys.stderr.write("still missing after apt-get: %s\n" % " ".join(n for n, _ in still))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
