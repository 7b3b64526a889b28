#!/usr/bin/env python3
"""tests/faults/badslides.py OUTDIR TAG=SLIDE... — write a corpus of damaged slides made from
good ones (little-endian TIFF or BigTIFF: Aperio .svs, generic tiled .tiff, magpie synth), plus
files that are not slides at all. Prints one line per file: "<path>\t<kind>".

Damage per source: truncation at several offsets, bit flips in the header, first-IFD offsets
that point nowhere / at 0 / into a loop, bit flips inside the first IFD, garbage and zeros in
tile data, tile offsets and byte counts past the end, zero-size and huge levels, huge and zero
tile sizes. Not slides: a PNG named .svs, empty, text and random files, a bare TIFF magic, a
directory, a symlink loop, a dangling symlink, a FIFO. Deterministic: the same sources give the same corpus."""
import os
import random
import struct
import sys
import zlib

TAG_W, TAG_H, TAG_TW, TAG_TH, TAG_TOFF, TAG_TCNT = 256, 257, 322, 323, 324, 325
SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


class Tiff:
    """Just enough of TIFF to find IFDs, their entries and the tile table."""

    def __init__(self, data):
        self.b = bytearray(data)
        if self.b[:4] == b"II*\0":
            self.big, self.first_at = False, 4
        elif self.b[:4] == b"II+\0":
            self.big, self.first_at = True, 8
        else:
            raise ValueError("not a little-endian TIFF")
        self.ifds = []
        off, seen = self.u(self.first_at, self.osz), set()
        while off and off not in seen and off < len(self.b):
            seen.add(off)
            self.ifds.append(off)
            n = self.u(off, 8 if self.big else 2)
            off = self.u(self.entry(off, n), self.osz)

    osz = property(lambda self: 8 if self.big else 4)
    esz = property(lambda self: 20 if self.big else 12)

    def u(self, at, n):
        return int.from_bytes(self.b[at:at + n], "little")

    def put(self, at, n, v):
        self.b[at:at + n] = (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")

    def entry(self, ifd, i):
        return ifd + (8 if self.big else 2) + i * self.esz

    def entries(self, ifd):
        n = self.u(ifd, 8 if self.big else 2)
        for i in range(n):
            e = self.entry(ifd, i)
            yield e, self.u(e, 2)

    def find(self, ifd, tag):
        for e, t in self.entries(ifd):
            if t == tag:
                return e
        return None

    def set_value(self, ifd, tag, v):
        """Set a scalar tag, widening SHORT to LONG so large values fit."""
        e = self.find(ifd, tag)
        if e is None:
            return False
        typ = self.u(e + 2, 2)
        if typ == 3:
            self.put(e + 2, 2, 4)
        self.put(e + 4, self.osz, 1)
        self.put(e + 4 + self.osz, self.osz, v)
        return True

    def array(self, ifd, tag):
        """(position of element 0, element size, count) of an array tag."""
        e = self.find(ifd, tag)
        if e is None:
            return None
        typ, cnt = self.u(e + 2, 2), self.u(e + 4, self.osz)
        es = SIZES.get(typ, 4)
        at = e + 4 + self.osz
        if es * cnt > self.osz:
            at = self.u(at, self.osz)
        return at, es, cnt


def damaged(src, data):
    """Yield (name, kind, bytes) for every damaged variant of one source."""
    n = len(data)
    for cut in sorted({0, 1, 8, 64, 512, 4096, n // 4, n // 2, 3 * n // 4, n - 1}):
        if cut < n:
            yield f"trunc{cut}", f"truncated at byte {cut} of {n}", data[:cut]
    for byte, bit in ((0, 0), (2, 1), (3, 7), (4, 0), (5, 3), (6, 7), (7, 1)):
        b = bytearray(data)
        b[byte] ^= 1 << bit
        yield f"hdrflip{byte}.{bit}", f"header byte {byte} bit {bit} flipped", bytes(b)
    t = Tiff(data)
    ifd0, last = t.ifds[0], t.ifds[-1]
    for name, v in (("ifd-eof", n + 4096), ("ifd-zero", 0), ("ifd-huge", (1 << (8 * t.osz - 1)) - 1),
                    ("ifd-odd", n // 3 | 1)):
        x = Tiff(data)
        x.put(x.first_at, x.osz, v)
        yield name, f"first IFD offset {v}", bytes(x.b)
    x = Tiff(data)
    nent = x.u(ifd0, 8 if x.big else 2)
    x.put(x.entry(ifd0, nent), x.osz, ifd0)
    yield "ifd-loop", "IFD 0's next-IFD offset points at itself", bytes(x.b)
    x = Tiff(data)
    x.put(last, 8 if x.big else 2, 0xFFFF)
    yield "ifd-count", "last IFD declares 65535 entries", bytes(x.b)
    rng = random.Random(zlib.crc32(src.encode()))
    ifd_end = t.entry(ifd0, nent)
    for k in range(6):
        x = Tiff(data)
        for _ in range(3):
            at = rng.randrange(ifd0, ifd_end)
            x.b[at] ^= 1 << rng.randrange(8)
        yield f"tagflip{k}", "3 bit flips in IFD 0's entries", bytes(x.b)
    arr = t.array(ifd0, TAG_TOFF)
    cnt = t.array(ifd0, TAG_TCNT)
    if arr and cnt:
        at, es, nt = arr
        cat, ces, _ = cnt
        offs = [t.u(at + i * es, es) for i in range(nt)]
        lens = [t.u(cat + i * ces, ces) for i in range(nt)]
        pick = [i for i in range(nt) if lens[i] > 64][:: max(1, nt // 5)][:5]
        x = Tiff(data)
        for i in pick:
            o, ln = offs[i], lens[i]
            x.b[o + ln // 4:o + ln // 4 + ln // 2] = bytes(rng.randrange(256) for _ in range(ln // 2))
        yield "tile-garbage", f"random bytes inside {len(pick)} tiles of level 0", bytes(x.b)
        x = Tiff(data)
        for i in pick:
            x.b[offs[i]:offs[i] + lens[i]] = bytes(lens[i])
        yield "tile-zeros", f"{len(pick)} tiles of level 0 zeroed", bytes(x.b)
        x = Tiff(data)
        for i in pick:
            x.put(cat + i * ces, ces, 0)
        yield "tile-len0", f"{len(pick)} tile byte counts 0", bytes(x.b)
        x = Tiff(data)
        for i in pick:
            x.put(cat + i * ces, ces, (1 << (8 * ces)) - 1 if ces < 8 else 1 << 40)
        yield "tile-lenhuge", f"{len(pick)} tile byte counts huge", bytes(x.b)
        x = Tiff(data)
        for i in pick:
            x.put(at + i * es, es, n + 1000)
        yield "tile-offeof", f"{len(pick)} tile offsets past the end", bytes(x.b)
    for name, tag, v, ifd in (("zero-w", TAG_W, 0, ifd0), ("zero-h", TAG_H, 0, ifd0),
                              ("zero-w-last", TAG_W, 0, last), ("huge-w", TAG_W, 0x7FFFFFFF, ifd0),
                              ("huge-h-last", TAG_H, 0x7FFFFFFF, last), ("huge-tw", TAG_TW, 0x40000000, ifd0),
                              ("huge-th", TAG_TH, 0x40000000, ifd0), ("zero-tw", TAG_TW, 0, ifd0),
                              ("tiny-tw", TAG_TW, 16, ifd0)):
        x = Tiff(data)
        if x.set_value(ifd, tag, v):
            yield name, f"tag {tag} of IFD {t.ifds.index(ifd)} set to {v}", bytes(x.b)
    x = Tiff(data)
    if x.set_value(ifd0, TAG_W, 0x7FFFFFFF) and x.set_value(ifd0, TAG_H, 0x7FFFFFFF):
        yield "huge-wh", "level 0 declared 2^31-1 x 2^31-1", bytes(x.b)


def png_bytes(w=8, h=8):
    raw = b"".join(b"\0" + bytes([200, 100, 150]) * w for _ in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def main():
    if len(sys.argv) < 3:
        print("usage: badslides.py OUTDIR TAG=SLIDE...", file=sys.stderr)
        return 1
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for arg in sys.argv[2:]:
        tag, path = arg.split("=", 1)
        ext = os.path.splitext(path)[1]
        data = open(path, "rb").read()
        for name, kind, b in damaged(tag, data):
            p = os.path.join(out, f"{tag}-{name}{ext}")
            with open(p, "wb") as f:
                f.write(b)
            print(f"{p}\t{kind}")
    special = os.path.join(out, "not-slides")
    os.makedirs(special, exist_ok=True)

    def put(name, b, kind):
        p = os.path.join(special, name)
        with open(p, "wb") as f:
            f.write(b)
        print(f"{p}\t{kind}")

    put("png.svs", png_bytes(), "a PNG named .svs")
    put("empty.svs", b"", "an empty file")
    put("text.tiff", b"slide,label\nx,y\n", "a text file named .tiff")
    put("random.svs", random.Random(1).randbytes(65536), "64 KiB of random bytes")
    put("tiffmagic.tif", b"II*\0" + b"\xff" * 60, "a TIFF magic and nothing else")
    os.mkdir(os.path.join(special, "dir.svs"))
    print(f"{os.path.join(special, 'dir.svs')}\ta directory named .svs")
    os.symlink("loop2.svs", os.path.join(special, "loop1.svs"))
    os.symlink("loop1.svs", os.path.join(special, "loop2.svs"))
    print(f"{os.path.join(special, 'loop1.svs')}\ta symlink loop")
    os.mkfifo(os.path.join(special, "fifo.svs"))
    print(f"{os.path.join(special, 'fifo.svs')}\ta FIFO named .svs (nobody writes to it)")
    os.symlink("/nonexistent/slide.svs", os.path.join(special, "dangling.svs"))
    print(f"{os.path.join(special, 'dangling.svs')}\ta dangling symlink")
    return 0


if __name__ == "__main__":
    sys.exit(main())
