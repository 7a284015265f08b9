#!/usr/bin/env python3
"""Turn src/dashboard.html into src/dashboard.c (a C string literal).

    python3 tools/embed_dashboard.py          regenerate src/dashboard.c
    python3 tools/embed_dashboard.py --check  exit 1 if it is out of date

The page is edited as HTML; the C file is what the build compiles, so the
binary carries the page and kage serves it with no file to install.
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src", "dashboard.html")
OUT = os.path.join(ROOT, "src", "dashboard.c")


def c_line(line):
    out = []
    for ch in line:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "?":
            out.append("\\?")  # no trigraphs, ever
        elif " " <= ch <= "~":
            out.append(ch)
        else:
            out.append("\\%03o" % ord(ch))
    return '\t"' + "".join(out) + '"'


def render(data):
    text = data.decode("latin-1")  # byte-exact: UTF-8 bytes become octal escapes
    lines = text.splitlines(keepends=True)
    body = "\n".join(c_line(l) for l in lines) if lines else '\t""'
    return ("/* Generated from src/dashboard.html by tools/embed_dashboard.py: edit the HTML,\n"
            " * then run the script. See dashboard.h. */\n"
            '#include "dashboard.h"\n\n'
            "const char dashboard_html[] =\n" + body + ";\n\n"
            "const size_t dashboard_html_len = sizeof dashboard_html - 1;\n")


def main():
    with open(SRC, "rb") as f:
        want = render(f.read())
    if "--check" in sys.argv[1:]:
        with open(OUT) as f:
            if f.read() != want:
                print("src/dashboard.c is out of date: run python3 tools/embed_dashboard.py",
                      file=sys.stderr)
                return 1
        return 0
    with open(OUT, "w") as f:
        f.write(want)
    return 0


if __name__ == "__main__":
    sys.exit(main())
