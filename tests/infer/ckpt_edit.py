#!/usr/bin/env python3
"""Rewrite a magpie checkpoint's header text (tests only): replace OLD by NEW, both the same
length, and store the header CRC again (nn/ckpt.h's layout), so the loader gets past its
integrity checks and the model card's own checks are what refuses the file.
usage: ckpt_edit.py IN OUT OLD NEW"""
import struct
import sys
import zlib

src, dst, old, new = sys.argv[1], sys.argv[2], sys.argv[3].encode(), sys.argv[4].encode()
if len(old) != len(new):
    sys.exit("ckpt_edit: OLD and NEW must have the same length")
b = bytearray(open(src, "rb").read())
header_len, = struct.unpack_from("<Q", b, 16)
data_off, = struct.unpack_from("<Q", b, 40)
head = bytes(b[64:64 + header_len])
if head.count(old) != 1:
    sys.exit("ckpt_edit: '%s' occurs %d times in the header" % (old.decode(), head.count(old)))
b[64:64 + header_len] = head.replace(old, new)
crc = zlib.crc32(bytes(b[64:data_off]), zlib.crc32(bytes(b[0:56])))
struct.pack_into("<I", b, 56, crc)
open(dst, "wb").write(b)
