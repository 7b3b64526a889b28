#!/usr/bin/env python3
"""Embed a text file as a C string: embed.py IN OUT NAME (build-time helper for db/schema.sql)."""
import sys
src, out, name = sys.argv[1:4]
text = open(src, encoding="utf-8").read()
body = "\n".join('    "' + line.replace("\\", "\\\\").replace('"', '\\"') + '\\n"' for line in text.splitlines())
open(out, "w").write(f"/* generated from {src.split('/')[-1]} */\nstatic const char {name}[] =\n{body};\n")
