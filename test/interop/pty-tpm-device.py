#!/usr/bin/env python3
"""
A TPM character device for the tests: a pseudo-terminal in raw mode whose other end relays each
command written to it to a swtpm data socket and writes the response back, so a client using it
does what it does with /dev/tpmrm0: open(2), write(2) a command, read(2) the response.

    pty-tpm-device.py SWTPM_SOCKET     prints the device's path on stdout, then relays until killed
"""
import os
import pty
import socket
import struct
import sys
import tty

HEADER = 10


def read_exact(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise SystemExit("the TPM closed its socket")
        out += chunk
    return out


def main() -> None:
    tpm = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    tpm.connect(sys.argv[1])
    master, slave = pty.openpty()
    tty.setraw(slave)
    # The slave stays open here too, so the device lives between its users' open and close.
    print(os.ttyname(slave), flush=True)
    pending = b""
    while True:
        pending += os.read(master, 65536)
        while len(pending) >= HEADER and len(pending) >= struct.unpack(">I", pending[2:6])[0]:
            size = struct.unpack(">I", pending[2:6])[0]
            command, pending = pending[:size], pending[size:]
            tpm.sendall(command)
            header = read_exact(tpm, HEADER)
            response = header + read_exact(tpm, struct.unpack(">I", header[2:6])[0] - HEADER)
            os.write(master, response)


if __name__ == "__main__":
    main()
