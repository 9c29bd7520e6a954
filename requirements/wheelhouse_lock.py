"""Print the hash lock of a wheelhouse: `name==version --hash=sha256:...`, one line per wheel.

runtime.lock pins what PyPI publishes, and pip checked every file against it when `make wheelhouse`
fetched it. sdnotify is published only as an sdist, so its wheel is built from that checked sdist
and has a hash PyPI never saw; the hosts therefore install with --require-hashes against this lock
of the exact files shipped. The ttquant wheel is left out: the role installs it with --no-deps.

    python requirements/wheelhouse_lock.py build/wheelhouse > build/wheelhouse/wheels.lock
"""
import hashlib
import pathlib
import re
import sys

OWN = "ttquant"


def main(wheelhouse: str) -> int:
    wheels = sorted(pathlib.Path(wheelhouse).glob("*.whl"))
    if not wheels:
        print(f"{wheelhouse}: no wheels", file=sys.stderr)
        return 2
    print("# the wheels of this wheelhouse, written by requirements/wheelhouse_lock.py (make wheelhouse)")
    for wheel in wheels:
        # wheel file names: {name}-{version}(-{build})?-{python}-{abi}-{platform}.whl, name with '_'
        name, version = wheel.name.split("-")[:2]
        name = re.sub(r"[-_.]+", "-", name).lower()
        if name == OWN:
            continue
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        print(f"{name}=={version} --hash=sha256:{digest}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} WHEELHOUSE")
    sys.exit(main(sys.argv[1]))
