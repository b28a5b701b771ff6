#!/usr/bin/env python3
"""One operation in a loop, to time Osprey's kernel programs on it (kernel-loops.sh runs this).

usage: kernel-loops.py LOOP N
Everything happens in a fresh directory under /dev/shm, over 127.0.0.1, on /bin/true, or
reads /etc/hostname.
"""
import os
import shutil
import socket
import sys
import tempfile


def main(kind: str, n: int) -> None:
    d = tempfile.mkdtemp(dir="/dev/shm", prefix="osprey-loop-")
    try:
        os.chdir(d)
        run(kind, n)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def run(kind: str, n: int) -> None:
    f = "file"
    open(f, "w").close()
    if kind == "chmod_same":  # folded after the first: the fold path
        for _ in range(n):
            os.chmod(f, 0o644)
    elif kind == "fchmod":
        fd = os.open(f, os.O_RDONLY)
        for i in range(n):
            os.fchmod(fd, 0o644 if i % 2 else 0o4755)
    elif kind == "rename_unique":  # a new name each time: every record is emitted
        cur = f
        for i in range(n):
            nxt = "f%d" % i
            os.rename(cur, nxt)
            cur = nxt
    elif kind == "open_rw":  # opens for writing, folded after the first
        for _ in range(n):
            os.close(os.open(f, os.O_WRONLY))
    elif kind == "open_ro":  # unwatched reads: not events
        for _ in range(n):
            os.close(os.open(f, os.O_RDONLY))
    elif kind == "open_ro_etc":  # reads on the device of watched files: the ancestors walked
        for _ in range(n):
            os.close(os.open("/etc/hostname", os.O_RDONLY))
    elif kind == "write_pipe":  # writes that are not to files
        r, w = os.pipe()
        for i in range(n):
            os.write(w, b"x")
            if i % 1000 == 999:
                os.read(r, 4096)
    elif kind == "tcp_pingpong":  # packets through the DNS programs
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        c = socket.create_connection(srv.getsockname())
        a, _ = srv.accept()
        for _ in range(n):
            c.send(b"x")
            a.recv(1)
            a.send(b"y")
            c.recv(1)
    elif kind == "connect_loop":  # TCP state changes (keep n under ~25,000: TIME_WAIT)
        srv = socket.socket()
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind(("127.0.0.1", 0))
        srv.listen(128)
        for _ in range(n):
            c = socket.create_connection(srv.getsockname())
            a, _ = srv.accept()
            c.close()
            a.close()
    elif kind == "spawn_true":  # exec, fork, exit
        for _ in range(n):
            os.waitpid(os.posix_spawn("/bin/true", ["true", "a", "b"], {}), 0)
    else:
        sys.exit(f"unknown loop {kind!r}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]))
