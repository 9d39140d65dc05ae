#!/usr/bin/env python3
"""Runs a command as uid 65534 in a user namespace whose own limit on user namespaces is 0.

    without-userns.py CMD [ARG...]

What a host with unprivileged user namespaces turned off looks like to that command:
creating one fails with ENOSPC. Needs root; nothing changes outside the new namespace
(the limit set is the new namespace's own). The exit status is the command's.
"""
import ctypes
import os
import sys

CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000


def main():
    libc = ctypes.CDLL(None, use_errno=True)
    ready_r, ready_w = os.pipe()
    mapped_r, mapped_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(mapped_w)
        if libc.unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0:
            os._exit(90)
        os.write(ready_w, b"x")
        os.read(mapped_r, 1)  # the parent has written the id maps
        with open("/proc/sys/user/max_user_namespaces", "w") as limit:
            limit.write("0")
        os.setgroups([])
        os.setresgid(65534, 65534, 65534)
        os.setresuid(65534, 65534, 65534)
        os.execv(sys.argv[1], sys.argv[1:])
    os.close(ready_w)
    os.close(mapped_r)
    os.read(ready_r, 1)
    for name in ("uid_map", "gid_map"):
        with open(f"/proc/{pid}/{name}", "w") as ids:
            ids.write("0 0 65536")
    os.write(mapped_w, b"x")
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))


if __name__ == "__main__":
    main()
