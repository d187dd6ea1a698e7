# The emulated link of scenario (h), run by tp-bench (src/link.rs) as
# `python3 -c <this file> NEAR FAR ONE_WAY_US`: opens the TUN devices NEAR and FAR
# and moves every IP packet from one to the other after ONE_WAY_US microseconds,
# unchanged, in order, without loss or rate limit. tp-bench then moves FAR into
# the far network namespace and addresses both ends.
#
# Python and not Rust because a TUN device is opened with an ioctl, which the
# workspace's `unsafe_code = "forbid"` rules out, and no TUN crate is worth its
# dependencies for a benchmark helper. One thread: the delay is the same for every
# packet, so one FIFO queue holds both directions in the order they are due.
import collections
import errno
import fcntl
import os
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
# Packets read from one device per wake-up, so that sustained traffic one way
# cannot hold back what is due.
BATCH = 64


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    near_name, far_name, one_way_us = sys.argv[1], sys.argv[2], int(sys.argv[3])
    delay = one_way_us / 1e6
    near, far = open_tun(near_name), open_tun(far_name)
    other = {near: far, far: near}
    due = collections.deque()  # (when, to, packet), oldest first
    print("ready", flush=True)
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else None
        readable, _, _ = select.select([near, far], [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            for _ in range(BATCH):
                try:
                    packet = os.read(fd, 65536)
                except BlockingIOError:
                    break
                due.append((now + delay, other[fd], packet))
        now = time.monotonic()
        while due and due[0][0] <= now:
            _, to, packet = due.popleft()
            try:
                os.write(to, packet)
            except OSError as e:
                # A full queue is a loss, as on a wire, and so is a device not
                # (yet) up (EIO: tp-bench brings the ends up one after the
                # other); anything else is a broken link, which must not pass
                # for a slow one.
                if e.errno not in (errno.EAGAIN, errno.ENOBUFS, errno.EIO):
                    sys.exit(f"link: writing a packet failed: {e}")


main()
