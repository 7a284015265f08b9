"""Request smuggling and response splitting: kage in front of a master
that records every byte it receives.

Request side: each case sends its bytes on a fresh connection, followed by a
canary request (GET /echo/canary, Connection: close). A strict RFC 9112
reading of those bytes (`strict_requests` below) says which requests the
client framed, with which bodies, or where the bytes stop making sense.
Whatever kage does must agree with it:

- kage may refuse a request (a 4xx/5xx of its own, with Connection: close,
  then EOF); it must when the strict reading refuses it, and with the
  status SPEC section 3 names where the case says so;
- every request kage forwards reaches master as exactly one message: the
  recorded bytes parse strictly as one request and nothing else, with the
  method, target and body of the strict reading, in order; a smuggled prefix
  never shows up at master as a request of its own;
- every response the client gets answers the request at its position (the
  /echo targets say which), the canary included, and nothing follows.

Response side: a scripted master answers with ambiguous framing; the client
gets a 502 (or a closed connection once bytes went out), never a second
response for one request, and its next request gets a fresh answer.
"""
import base64
import json
import os
import re
import select
import socket
import sys
import tempfile
import time

from harness import Case, Reader, ScriptedBackend

CRLF = b"\r\n"
TCHAR = set(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
HEXDIG = set(b"0123456789abcdefABCDEF")
CANARY = b"GET /echo/canary HTTP/1.1\r\nHost: canary\r\nConnection: close\r\n\r\n"


# --- a strict RFC 9112 reading of requests ------------------------------------------


class Malformed(Exception):
    def __init__(self, status, why):
        super().__init__(f"{status} {why}")
        self.status = status
        self.why = why


class Incomplete(Exception):
    pass


class Req:
    def __init__(self, method, target, minor, headers, body, close, trailer_ok=True):
        self.method = method
        self.target = target
        self.minor = minor
        self.headers = headers
        self.body = body
        self.close = close
        self.trailer_ok = trailer_ok

    def __repr__(self):
        return f"<{self.method} {self.target} body={self.body[:40]!r}>"


def _line(data, pos):
    """One CRLF-terminated line from pos: (line, next). Bare LF or CR: 400."""
    nl = data.find(b"\n", pos)
    if nl < 0:
        if b"\r" in data[pos:len(data) - 1]:
            raise Malformed(400, "bare CR")
        raise Incomplete()
    if nl == pos or data[nl - 1] != 0x0D:
        raise Malformed(400, "bare LF")
    line = data[pos:nl - 1]
    if b"\r" in line:
        raise Malformed(400, "bare CR")
    return line, nl + 1


def _fields(data, pos):
    """Field lines up to the empty line: ([(name, value)], next)."""
    out = []
    while True:
        line, pos = _line(data, pos)
        if not line:
            return out, pos
        if line[:1] in (b" ", b"\t"):
            raise Malformed(400, "obs-fold")
        name, colon, value = line.partition(b":")
        if not colon or not name or any(c not in TCHAR for c in name):
            raise Malformed(400, "invalid field name")
        value = value.strip(b" \t")
        if any((c < 0x20 and c != 0x09) or c == 0x7F for c in value):
            raise Malformed(400, "control byte in a field value")
        out.append((name.decode("latin-1").lower(), value))


def _list(values):
    """RFC 9110 list elements of several field lines (empty elements dropped)."""
    out = []
    for v in values:
        for el in v.split(b","):
            el = el.strip(b" \t")
            if el:
                out.append(el)
    return out


def _chunked(data, pos):
    """A chunked body from pos: (body, next, trailers_ok)."""
    body = b""
    while True:
        line, pos = _line(data, pos)
        i = 0
        while i < len(line) and line[i] in HEXDIG:
            i += 1
        if i == 0:
            raise Malformed(400, "bad chunk size")
        size = int(line[:i], 16)
        ext = line[i:]
        # chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ); an empty
        # extension after ';' is read as none (no parser reads a size from it).
        if ext and not re.fullmatch(rb'([ \t]*;[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+'
                                    rb'([ \t]*=[ \t]*([!#$%&\'*+.^_`|~0-9A-Za-z-]+|"[^"\\]*"))?)?)+',
                                    ext):
            raise Malformed(400, "bad chunk extension")
        if size == 0:
            try:
                _, pos = _fields(data, pos)
                return body, pos, True
            except Malformed:
                # The trailer section is malformed: the body is known, but a
                # strict reader refuses the message. Find its end to go on.
                end = data.find(b"\r\n\r\n", pos - 2)
                if end < 0:
                    raise Incomplete()
                return body, end + 4, False
        if len(data) < pos + size + 2:
            raise Incomplete()
        body += data[pos:pos + size]
        pos += size
        if data[pos:pos + 2] != CRLF:
            raise Malformed(400, "chunk data not followed by CRLF")
        pos += 2


def strict_request(data, pos):
    """One request from pos: (Req, next)."""
    while data[pos:pos + 2] == CRLF:     # RFC 9112 2.2: empty lines before a request
        pos += 2
    line, pos = _line(data, pos)
    # RFC 9112 section 3: recipients MAY split the request line on runs of SP.
    m = re.fullmatch(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +([\x21-\x7e]+) +HTTP/(\d)\.(\d)", line)
    if not m:
        if re.fullmatch(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+ [\x21-\x7e]+ HTTP/\d\.\d", line) is None \
                and re.fullmatch(rb"[A-Z]+ \S+ HTTP/\d+\.\d+", line):
            raise Malformed(505, "version")
        raise Malformed(400, "request line")
    method, target = m.group(1).decode(), m.group(2).decode("latin-1")
    major, minor = int(m.group(3)), int(m.group(4))
    if (major, minor) not in ((1, 0), (1, 1)):
        raise Malformed(505, "version")
    if method == "CONNECT":
        raise Malformed(501, "CONNECT")
    fields, pos = _fields(data, pos)
    get = lambda n: [v for k, v in fields if k == n]
    hosts = get("host")
    if (minor == 1 and len(hosts) != 1) or len(hosts) > 1:
        raise Malformed(400, "Host")
    te, cl = get("transfer-encoding"), get("content-length")
    conn = [c.lower() for c in _list(get("connection"))]
    close = b"close" in conn or (minor == 0 and b"keep-alive" not in conn)
    trailer_ok = True
    if te:
        if minor == 0:
            raise Malformed(400, "Transfer-Encoding in HTTP/1.0")
        if cl:
            raise Malformed(400, "Content-Length with Transfer-Encoding")
        codings = [c.split(b";")[0].strip(b" \t").lower() for c in _list(te)]
        if not codings or codings[-1] != b"chunked" or codings.count(b"chunked") > 1:
            raise Malformed(400, "chunked is not the last coding")
        if len(codings) > 1:
            raise Malformed(501, "a transfer coding other than chunked")
        body, pos, trailer_ok = _chunked(data, pos)
    elif cl:
        vals = _list(cl)
        if not vals or any(not re.fullmatch(rb"[0-9]+", v) for v in vals) or \
                len({int(v) for v in vals}) != 1 or len(vals) != len(cl) and len(set(vals)) != 1:
            raise Malformed(400, "Content-Length")
        n = int(vals[0])
        if len(data) < pos + n:
            raise Incomplete()
        body, pos = data[pos:pos + n], pos + n
    else:
        body = b""
    return Req(method, target, minor, fields, body, close, trailer_ok), pos


def strict_requests(data):
    """Every request in data: ([Req], end) where end is "done", "incomplete"
    or the Malformed refusing the next request."""
    out, pos = [], 0
    while pos < len(data):
        try:
            r, pos = strict_request(data, pos)
        except Incomplete:
            return out, "incomplete"
        except Malformed as e:
            return out, e
        out.append(r)
        if r.close:
            break
    return out, "done"


# --- the cases --------------------------------------------------------------------


def R(line, *headers, body=b"", host=b"Host: test"):
    hs = ([host] if host else []) + list(headers)
    return line + CRLF + b"".join(h + CRLF for h in hs) + CRLF + body


def P(name, *headers, body=b"", line=None):
    """A POST to /echo/NAME."""
    return R(line or b"POST /echo/" + name.encode() + b" HTTP/1.1", *headers, body=body)


CH = b"5\r\nhello\r\n0\r\n\r\n"       # a chunked "hello"
TE = b"Transfer-Encoding: chunked"
SMUG = b"GET /echo/smuggled HTTP/1.1\r\nHost: evil\r\n\r\n"

# (name, bytes, must): must is None (refusing or forwarding are both fine,
# as long as the strict reading agrees), "accept", or a status kage must
# answer with (SPEC section 3).
REQUEST_CASES = [
    # Baselines.
    ("get", R(b"GET /echo/get HTTP/1.1"), "accept"),
    ("post_cl", P("post_cl", b"Content-Length: 5", body=b"hello"), "accept"),
    ("post_chunked", P("post_chunked", TE, body=b"5;a=b\r\nhello\r\n6;q=\"x y\"\r\n world\r\n0\r\nX-T: 1\r\n\r\n"), "accept"),
    ("http10", R(b"GET /echo/http10 HTTP/1.0", host=None), "accept"),
    ("http10_keepalive", R(b"GET /echo/http10ka HTTP/1.0", b"Connection: keep-alive"), "accept"),
    ("pipelined", R(b"GET /echo/p1 HTTP/1.1") + P("p2", b"Content-Length: 3", body=b"abc") +
     R(b"HEAD /echo/p3 HTTP/1.1"), "accept"),
    ("get_body_holds_request", R(b"GET /echo/getbody HTTP/1.1", b"Content-Length: %d" % len(SMUG),
                                 body=SMUG), "accept"),
    ("post_body_holds_request", P("postbody", b"Content-Length: %d" % len(SMUG), body=SMUG), "accept"),
    ("chunked_body_holds_request", P("chbody", TE, body=b"%x\r\n" % len(SMUG) + SMUG + b"\r\n0\r\n\r\n"), "accept"),
    ("head_with_body", R(b"HEAD /echo/headbody HTTP/1.1", b"Content-Length: 5", body=b"hello"), None),
    ("get_chunked_body", R(b"GET /echo/getch HTTP/1.1", TE, body=CH), "accept"),
    ("expect_continue", P("expect", b"Expect: 100-continue", b"Content-Length: 2", body=b"ok"), None),
    ("close_then_more", R(b"GET /echo/closefirst HTTP/1.1", b"Connection: close") + SMUG, "accept"),
    ("leading_crlf", CRLF + R(b"GET /echo/leadingcrlf HTTP/1.1"), None),
    ("absolute_form", R(b"GET http://test/echo/absolute HTTP/1.1"), None),
    ("empty_header_value", R(b"GET /echo/emptyvalue HTTP/1.1", b"X-Empty:", b"X-After: 1"), "accept"),
    ("empty_header_value_space", R(b"GET /echo/emptyvalue2 HTTP/1.1", b"X-Empty: "), "accept"),
    # CL.TE and TE.CL.
    ("cl_te", P("clte", b"Content-Length: 6", TE, body=b"0\r\n\r\nG"), 400),
    ("te_cl", P("tecl", TE, b"Content-Length: 3", body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"), 400),
    ("cl_te_smuggle", P("clte2", b"Content-Length: %d" % (5 + len(SMUG)), TE,
                        body=b"0\r\n\r\n" + SMUG), 400),
    ("te_cl_smuggle", P("tecl2", TE, b"Content-Length: 4",
                        body=b"%x\r\n" % len(SMUG) + SMUG + b"\r\n0\r\n\r\n"), 400),
    # Transfer-Encoding mutations (defparam/smuggler's list and friends).
    ("te_space_before_colon", P("te1", b"Transfer-Encoding : chunked", body=CH), 400),
    ("te_tab_value", P("te2", b"Transfer-Encoding:\tchunked", body=CH), None),
    ("te_trailing_space", P("te3", b"Transfer-Encoding: chunked ", body=CH), None),
    ("te_trailing_tab", P("te4", b"Transfer-Encoding: chunked\t", body=CH), None),
    ("te_trailing_tab_smuggle", P("te4b", b"Transfer-Encoding: chunked\t", body=SMUG), None),
    ("te_leading_space_fold", P("te5", b"X: y", b" Transfer-Encoding: chunked", body=CH), 400),
    ("te_lowercase_name", P("te6", b"transfer-encoding: chunked", body=CH), None),
    ("te_mixed_case_name", P("te7", b"Transfer-encoding: chunked", body=CH), None),
    ("te_uppercase", P("te8", b"TRANSFER-ENCODING: CHUNKED", body=CH), None),
    ("te_xchunked", P("te9", b"Transfer-Encoding: xchunked", body=CH), 400),
    ("te_chunked_identity", P("te10", b"Transfer-Encoding: chunked, identity", body=CH), 400),
    ("te_identity_chunked", P("te11", b"Transfer-Encoding: identity, chunked", body=CH), 501),
    ("te_gzip_chunked", P("te12", b"Transfer-Encoding: gzip, chunked", body=CH), 501),
    ("te_chunked_twice_list", P("te13", b"Transfer-Encoding: chunked, chunked", body=CH), 400),
    ("te_duplicate_headers", P("te14", TE, TE, body=CH), 400),
    ("te_duplicate_identity_last", P("te15", TE, b"Transfer-Encoding: identity", body=CH), 400),
    ("te_vertical_tab", P("te16", b"Transfer-Encoding:\x0bchunked", body=CH), 400),
    ("te_form_feed", P("te17", b"Transfer-Encoding: chunked\x0c", body=CH), 400),
    ("te_nul", P("te18", b"Transfer-Encoding: chunked\x00", body=CH), 400),
    ("te_x85", P("te19", b"Transfer-Encoding: \x85chunked", body=CH), None),
    ("te_xa0", P("te20", b"Transfer-Encoding: chunked\xa0", body=CH), None),
    ("te_quoted", P("te21", b'Transfer-Encoding: "chunked"', body=CH), None),
    ("te_folded_value", P("te22", b"Transfer-Encoding:", b" chunked", body=CH), 400),
    ("te_name_lf", P("te23", b"Transfer-Encoding\n: chunked", body=CH), 400),
    ("te_after_bare_lf", P("te24", b"X: x\nTransfer-Encoding: chunked", body=CH), 400),
    ("te_after_bare_cr", P("te25", b"X-Abc: \rxTransfer-Encoding: chunked", body=b"1\r\nA\r\n0\r\n\r\n"), 400),
    ("te_leading_comma", P("te26", b"Transfer-Encoding: , chunked", body=CH), None),
    ("te_in_http10", P("te27", TE, body=CH, line=b"POST /echo/te27 HTTP/1.0"), 400),
    ("te_space_in_name", P("te28", b"Transfer Encoding: chunked", body=CH), 400),
    ("te_underscore_name", P("te29", b"Transfer_Encoding: chunked", body=CH), None),
    ("te_empty", P("te30", b"Transfer-Encoding:", body=CH), None),
    ("te_cl_split_lines", P("te31", b"Content-Length: 0", b"Transfer-Encoding: chunked", body=CH), 400),
    # Content-Length mutations.
    ("cl_overflow", P("cl1", b"Content-Length: 99999999999999999999", body=b"hello"), 400),
    ("cl_u64_overflow", P("cl2", b"Content-Length: 18446744073709551616", body=b"hello"), 400),
    ("cl_negative", P("cl3", b"Content-Length: -1", body=b"hello"), 400),
    ("cl_plus", P("cl4", b"Content-Length: +5", body=b"hello"), 400),
    ("cl_leading_space", P("cl5", b"Content-Length:  5", body=b"hello"), None),
    ("cl_two_numbers", P("cl6", b"Content-Length: 5 5", body=b"hello"), 400),
    ("cl_hex", P("cl7", b"Content-Length: 0x5", body=b"hello"), 400),
    ("cl_twice_same", P("cl8", b"Content-Length: 5", b"Content-Length: 5", body=b"hello"), None),
    ("cl_twice_different", P("cl9", b"Content-Length: 3", b"Content-Length: 5", body=b"hello"), 400),
    ("cl_list_same", P("cl10", b"Content-Length: 5, 5", body=b"hello"), None),
    ("cl_list_different", P("cl11", b"Content-Length: 5, 3", body=b"hello"), 400),
    ("cl_empty", P("cl12", b"Content-Length:", body=b"hello"), 400),
    ("cl_trailing_junk", P("cl13", b"Content-Length: 5x", body=b"hello"), 400),
    ("cl_decimal", P("cl14", b"Content-Length: 5.0", body=b"hello"), 400),
    ("cl_leading_zeros", P("cl15", b"Content-Length: 005", body=b"hello"), None),
    ("cl_space_before_colon", P("cl16", b"Content-Length : 5", body=b"hello"), 400),
    ("cl_folded", P("cl17", b"X: y", b" Content-Length: 5", body=b"hello"), 400),
    ("cl_folded_empty_first_line", P("cl17b", b"Content-Length:", b" 5", body=b"hello"), 400),
    ("cl_vertical_tab", P("cl18", b"Content-Length:\x0b5", body=b"hello"), 400),
    # Host.
    ("host_missing", R(b"GET /echo/h1 HTTP/1.1", host=None), 400),
    ("host_twice", R(b"GET /echo/h2 HTTP/1.1", b"Host: other"), 400),
    ("host_twice_same", R(b"GET /echo/h3 HTTP/1.1", b"Host: test"), 400),
    ("host_space_before_colon", R(b"GET /echo/h4 HTTP/1.1", host=b"Host : test"), 400),
    ("host_missing_http10", R(b"GET /echo/h5 HTTP/1.0", host=None), "accept"),
    # Line ends.
    ("bare_lf_everywhere", b"GET /echo/lf HTTP/1.1\nHost: test\n\n", 400),
    ("bare_lf_request_line", b"GET /echo/lf2 HTTP/1.1\nHost: test\r\n\r\n", 400),
    ("bare_lf_end_of_head", b"GET /echo/lf3 HTTP/1.1\r\nHost: test\r\n\n", 400),
    ("bare_cr_request_line", b"GET /echo/cr HTTP/1.1\rHost: test\r\n\r\n", 400),
    ("bare_cr_in_value", R(b"GET /echo/cr2 HTTP/1.1", b"X: a\rb"), 400),
    # Versions.
    ("version_1_2", R(b"GET /echo/v1 HTTP/1.2"), 505),
    ("version_2_0", R(b"GET /echo/v2 HTTP/2.0"), 505),
    ("version_1_1x", R(b"GET /echo/v3 HTTP/1.1x"), 400),
    ("version_lowercase", R(b"GET /echo/v4 http/1.1"), 400),
    ("version_missing", b"GET /echo/v5\r\n\r\n", 400),
    ("version_two_digits", R(b"GET /echo/v6 HTTP/11.1"), None),
    ("version_short", R(b"GET /echo/v7 HTTP/1"), None),
    ("h2_preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", None),
    ("connect", R(b"CONNECT test:443 HTTP/1.1", host=b"Host: test:443"), 501),
    # Chunk-size games.
    ("chunk_0x_prefix", P("ck1", TE, body=b"0x5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_empty_ext", P("ck2", TE, body=b"5;\r\nhello\r\n0\r\n\r\n"), None),
    ("chunk_space_before_ext", P("ck3", TE, body=b"5 ;ext\r\nhello\r\n0\r\n\r\n"), None),
    ("chunk_trailing_space", P("ck4", TE, body=b"5 \r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_huge_hex", P("ck5", TE, body=b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_negative", P("ck6", TE, body=b"-5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_plus", P("ck7", TE, body=b"+5\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_data_too_long", P("ck8", TE, body=b"5\r\nhelloX\r\n0\r\n\r\n"), 400),
    ("chunk_data_too_short", P("ck9", TE, body=b"5\r\nhel\r\n0\r\n\r\n"), 400),
    ("chunk_missing_crlf_then_request", P("ck10", TE, body=b"5\r\nhello" + SMUG), 400),
    ("chunk_bare_lf_size", P("ck11", TE, body=b"5\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_uppercase_hex", P("ck12", TE, body=b"A\r\n0123456789\r\n0\r\n\r\n"), "accept"),
    ("chunk_leading_zeros", P("ck13", TE, body=b"0005\r\nhello\r\n0000\r\n\r\n"), None),
    ("chunk_last_with_ext", P("ck14", TE, body=b"5\r\nhello\r\n0;x=y\r\n\r\n"), None),
    ("chunk_trailer_content_length", P("ck15", TE, body=b"5\r\nhello\r\n0\r\nContent-Length: 99\r\n\r\n"), None),
    ("chunk_trailer_transfer_encoding", P("ck16", TE, body=b"5\r\nhello\r\n0\r\nTransfer-Encoding: chunked\r\n\r\n"), None),
    ("chunk_trailer_folded", P("ck17", TE, body=b"5\r\nhello\r\n0\r\nX: a\r\n b\r\n\r\n"), None),
    ("chunk_then_request", P("ck18", TE, body=CH + SMUG), "accept"),
    ("chunk_size_overflow_wrap", P("ck19", TE, body=b"10000000000000005\r\nhello\r\n0\r\n\r\n"), 400),
    ("chunk_ext_bare_lf", P("ck20", TE, body=b"5;a=b\nhello\r\n0\r\n\r\n"), 400),
    # Control bytes and names.
    ("nul_in_value", R(b"GET /echo/c1 HTTP/1.1", b"X: a\x00b"), 400),
    ("del_in_value", R(b"GET /echo/c2 HTTP/1.1", b"X: a\x7fb"), None),
    ("ctl_in_value", R(b"GET /echo/c3 HTTP/1.1", b"X: a\x01b"), 400),
    ("space_in_name", R(b"GET /echo/c4 HTTP/1.1", b"X Y: z"), 400),
    ("at_in_name", R(b"GET /echo/c5 HTTP/1.1", b"X@Y: z"), 400),
    ("empty_name", R(b"GET /echo/c6 HTTP/1.1", b": z"), 400),
    ("non_ascii_name", R(b"GET /echo/c7 HTTP/1.1", b"X\xe9: z"), 400),
    ("space_in_target", b"GET /echo/c8 x HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("ctl_in_target", b"GET /echo/c9\x01 HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("tab_separator", b"GET\t/echo/c10 HTTP/1.1\r\nHost: test\r\n\r\n", 400),
    ("two_spaces", b"GET  /echo/c11 HTTP/1.1\r\nHost: test\r\n\r\n", None),
    # Pipelines where the first request smuggles a second.
    ("pipelined_cl0_then_get", P("pl1", b"Content-Length: 0") + SMUG, "accept"),
    ("pipelined_te_then_get", P("pl2", TE, body=b"0\r\n\r\n") + SMUG, "accept"),
    ("pipelined_get_cl_eats_next", R(b"GET /echo/pl3 HTTP/1.1", b"Content-Length: %d" % len(SMUG)) + SMUG, "accept"),
    ("pipelined_bad_second", R(b"GET /echo/pl4 HTTP/1.1") + P("pl4b", b"Content-Length: 3", TE, body=b"0\r\n\r\n"), None),
    ("pipelined_http10_then_get", R(b"GET /echo/pl5 HTTP/1.0") + SMUG, "accept"),
]


def echo_of(resp):
    try:
        return json.loads(resp.body)
    except ValueError:
        return None


def from_master(resp):
    return resp.header("X-Backend") is not None


class Smuggling(Case):
    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="kage-smuggling-")
        self.rec_path = os.path.join(self.tmp, "master.rec")
        self.rec_off = 0

    def start(self):
        be = self.backend("--record", self.rec_path, name="master")
        kg = self.kage("--client-timeout", "1", "--backend-timeout", "3",
                       master=("production", be.port))
        return be, kg

    def new_records(self, settle=0.0):
        """Record lines written since the last call."""
        if settle:
            time.sleep(settle)
        out = []
        if not os.path.exists(self.rec_path):
            return out
        with open(self.rec_path, "rb") as f:
            f.seek(self.rec_off)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.rec_off += end
        for line in data[:end].splitlines():
            out.append(json.loads(line))
        return out

    # --- one request-side case ---------------------------------------------------
    def run_case(self, kg, name, raw, must):
        sent = raw + CANARY
        expect, end = strict_requests(sent)
        s = self.connect(kg.port)
        s.sendall(sent)
        rd = Reader(s, timeout=3.0)
        got = []
        while True:
            i = len(got)
            head = i < len(expect) and expect[i].method == "HEAD"
            try:
                r = rd.response(head_request=head)
            except (EOFError, TimeoutError, ConnectionResetError):
                break
            if not 100 <= r.status < 200:
                got.append(r)
        eof = rd.at_eof(wait=0.5)
        answered, refusal, after = [], None, []
        for r in got:
            if refusal is not None:
                after.append(r)
            elif from_master(r):
                answered.append(r)
            else:
                refusal = r
        recs = self.new_records(0.15 if refusal is not None or not eof else 0.0)
        if os.environ.get("VERBOSE"):
            print(f"{name}: forwarded {len(answered)} of {len(expect)} ({end!r}), "
                  f"{'refused %d' % refusal.status if refusal else 'no refusal'}, "
                  f"{len(recs)} records", file=sys.stderr)
        what = f"{name}: sent {sent!r}\nstrict reading: {expect} then {end!r}\n" \
               f"responses: {got}\nmaster records: {recs}"

        # What SPEC section 3 says, first: the clearest failure message.
        if must in (400, 501, 505):
            self.assertFalse(answered, f"SPEC says {must}, kage forwarded it: " + what)
            self.assertIsNotNone(refusal, f"SPEC says {must}, kage did not answer: " + what)
            self.assertEqual(refusal.status, must, f"SPEC says {must}: " + what)
        elif must == "accept":
            self.assertGreaterEqual(len(answered), len(expect), "kage refused a valid request: " + what)
        self.assertFalse(after, "responses after kage's refusal: " + what)
        if len(answered) > len(expect):
            self.fail(f"kage forwarded what a strict reading refuses ({end!r}): " + what)

        # Every response from master answers the request at its position.
        for i, r in enumerate(answered):
            q = expect[i]
            if q.method != "HEAD":
                e = echo_of(r)
                self.assertIsNotNone(e, "not an echo: " + what)
                self.assertEqual((e["method"], e["target"]), (q.method, q.target),
                                 f"response {i} answers another request: " + what)
                self.assertEqual(base64.b64decode(e.get("body_b64", "")), q.body,
                                 f"response {i}: master read another body: " + what)

        # What master received: one strict message per forwarded request.
        complete = [x for x in recs if not x.get("incomplete")]
        self.assertFalse([x for x in recs if x.get("error")],
                         "master refused what kage forwarded: " + what)
        self.assertLessEqual(len(complete), len(expect), "master saw extra requests: " + what)
        for i, x in enumerate(complete):
            raw_m = base64.b64decode(x["raw"])
            got_m, end_m = strict_requests(raw_m)
            self.assertTrue(len(got_m) == 1 and end_m == "done",
                            f"record {i} is not exactly one strict request "
                            f"({got_m}, {end_m!r}): {raw_m!r}\n" + what)
            self.assertEqual((got_m[0].method, got_m[0].target, got_m[0].body),
                             (expect[i].method, expect[i].target, expect[i].body),
                             f"record {i} differs from the strict reading: " + what)
            names = [n for n, _ in got_m[0].headers]
            for hop in ("connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"):
                self.assertNotIn(hop, names, f"record {i} carries {hop}: " + what)
            self.assertLessEqual(names.count("transfer-encoding"), 1, what)
            self.assertEqual(names.count("host"), 1, f"record {i}: Host count: " + what)
        self.assertEqual(len(complete), len(answered),
                         "forwarded and answered counts differ: " + what)
        incomplete = [x for x in recs if x.get("incomplete")]
        if incomplete:
            # Only a request refused in its body may have reached master in
            # part (bodies stream): its head, never a request of its own.
            self.assertIsNotNone(refusal, "a partial request at master: " + what)
            self.assertEqual(len(incomplete), 1, what)

        if refusal is not None:
            self.assertTrue(400 <= refusal.status < 600, what)
            self.assertEqual((refusal.header("Connection") or "").lower(), "close",
                             "a refusal without Connection: close: " + what)
            self.assertTrue(eof, "no EOF after the refusal: " + what)
            if len(answered) == len(expect) and end == "done":
                # The strict reading ends there: the last request asked to
                # close (Connection: close, or HTTP/1.0), nothing may follow.
                self.fail("a response after the response that closes the connection: " + what)
            return   # refused where, or before, the strict reading stops
        # Nothing refused: the strict reading frames all of it, every request
        # is answered (the canary last, with Connection: close), then EOF.
        self.assertEqual(end, "done", "kage forwarded what a strict reading refuses: " + what)
        self.assertEqual(len(answered), len(expect), "requests left unanswered: " + what)
        self.assertTrue(eof, "no EOF after the last response: " + what)

    def test_request_cases(self):
        be, kg = self.start()
        names = [c[0] for c in REQUEST_CASES]
        self.assertEqual(len(names), len(set(names)), "case names must be unique")
        for name, raw, must in REQUEST_CASES:
            with self.subTest(case=name):
                self.run_case(kg, name, raw, must)
        # Still healthy: a plain request after all of it.
        s = self.connect(kg.port)
        s.sendall(R(b"GET /echo/after HTTP/1.1"))
        r = Reader(s).response()
        self.assertEqual(echo_of(r)["target"], "/echo/after")


# --- the response side ------------------------------------------------------------------

FRESH = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Fresh: 1\r\n\r\nfresh"
SMUGGLED_RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nSMUGGLED"


def ok(body, extra=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


# (name, method, what master sends, then: "keep" the connection / "close" it,
#  expect: "502" (kage answers 502), "close" (the client connection closes,
#  possibly after a head), "ok:BODY" (the client gets exactly that body), or
#  "any" (502, close, or a response whose body the case names in okbody))
RESPONSE_CASES = [
    ("cl_te", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "keep", "502"),
    ("te_cl", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", "keep", "502"),
    ("two_cl_different", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", "keep", "502"),
    ("two_cl_same", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello", "keep", "any:hello"),
    ("te_chunked_gzip", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "keep", "502"),
    ("te_gzip_only", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nhello", "close", "any:hello"),
    ("te_chunked_twice", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "keep", "502"),
    ("chunk_size_invalid", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", "keep", "close"),
    ("chunk_size_overflow", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nhello\r\n0\r\n\r\n", "keep", "close"),
    ("chunk_size_0x", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", "keep", "close"),
    ("chunk_data_too_long", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n", "keep", "close"),
    ("obs_fold", "GET", b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("obs_fold_cl", "GET", b"HTTP/1.1 200 OK\r\nX-A: a\r\n Content-Length: 5\r\n\r\nhello", "keep", "502"),
    ("bare_lf", "GET", b"HTTP/1.1 200 OK\nContent-Length: 5\n\nhello", "keep", "502"),
    ("bare_lf_header", "GET", b"HTTP/1.1 200 OK\r\nX-A: a\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("bare_cr", "GET", b"HTTP/1.1 200 OK\r\nX-A: a\rContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("cl_plus", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello", "keep", "502"),
    ("cl_negative", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello", "keep", "502"),
    ("cl_space_before_colon", "GET", b"HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\nhello", "keep", "502"),
    ("nul_in_header", "GET", b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("http2_status_line", "GET", b"HTTP/2.0 200 OK\r\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("status_two_digits", "GET", b"HTTP/1.1 99 Odd\r\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("status_099", "GET", b"HTTP/1.1 099 Odd\r\nContent-Length: 5\r\n\r\nhello", "keep", "502"),
    ("unrequested_101", "GET", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "keep", "502"),
    ("extra_bytes_after", "GET", ok(b"hello") + b"garbage", "keep", "ok:hello"),
    ("second_response_same_write", "GET", ok(b"hello") + SMUGGLED_RESP, "keep", "ok:hello"),
    ("second_response_later", "GET", [ok(b"hello"), SMUGGLED_RESP], "keep", "ok:hello"),
    ("head_with_body", "HEAD", ok(b"SMUGGLED"), "keep", "ok:"),
    ("no_content_with_body", "GET", b"HTTP/1.1 204 No Content\r\n\r\n" + SMUGGLED_RESP, "keep", "ok:"),
    ("not_modified_with_cl_body", "GET", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 8\r\n\r\nSMUGGLED", "keep", "ok:"),
    ("continue_then_final", "GET", b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"hello"), "keep", "ok:hello"),
    ("close_with_extra", "GET", ok(b"hello", b"Connection: close\r\n") + SMUGGLED_RESP, "close", "ok:hello"),
    ("close_delimited", "GET", b"HTTP/1.1 200 OK\r\n\r\nuntil close", "close", "ok:until close"),
    ("close_delimited_empty", "GET", b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n", "close", "ok:"),
    ("cl_longer_than_sent", "GET", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nhello", "close", "close"),
    ("empty_header_value", "GET", ok(b"hello", b"X-Empty:\r\n"), "keep", "ok:hello"),
    ("te_chunked_trailing_tab", "GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\t\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "close", "any:hello"),
    # Last: under ASan/UBSan this one stops kage (head.c copies from a NULL store).
    ("empty_reason_no_headers", "GET", b"HTTP/1.1 204 \r\n\r\n", "keep", "ok:"),
]


class ResponseSmuggling(Case):
    def test_response_cases(self):
        cases = {name: (method, data, after, expect) for name, method, data, after, expect
                 in RESPONSE_CASES}
        self.assertEqual(len(cases), len(RESPONSE_CASES), "case names must be unique")

        def handler(conn, index):
            while True:
                req = conn.read_request()
                if req is None:
                    return
                target = req.split(b" ", 2)[1].decode()
                name = target.rsplit("/", 1)[-1]
                if target.startswith("/case/") and name in cases:
                    _, data, after, _ = cases[name]
                    for i, part in enumerate(data if isinstance(data, list) else [data]):
                        if i:
                            time.sleep(0.05)
                        conn.send(part)
                    if after == "close":
                        return
                else:
                    conn.send(FRESH)

        sb = ScriptedBackend(handler)
        try:
            kg = self.kage("--client-timeout", "2", "--backend-timeout", "2",
                           master=("production", sb.port))
            for name, method, data, after, expect in RESPONSE_CASES:
                with self.subTest(case=name):
                    self.run_response_case(kg, name, method, expect)
        finally:
            sb.close()

    def run_response_case(self, kg, name, method, expect):
        s = self.connect(kg.port)
        s.sendall(f"{method} /case/{name} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
        rd = Reader(s, timeout=3.0)
        what = f"{name} (expect {expect})"
        r = None
        try:
            while True:
                r = rd.response(head_request=method == "HEAD")
                if not 100 <= r.status < 200:
                    break
        except (EOFError, TimeoutError, ConnectionResetError, AssertionError, ValueError) as e:
            r = None
            what += f": no whole response ({e!r})"
        if expect == "502":
            self.assertIsNotNone(r, what)
            self.assertEqual(r.status, 502, f"{what}: got {r}")
        elif expect == "close":
            # Bytes went out (or might have): only a close can tell the client.
            if r is not None:
                self.assertEqual(r.status, 502, f"{what}: a whole response {r}")
        elif expect.startswith("ok:"):
            self.assertIsNotNone(r, what)
            self.assertIn(r.status, (200, 204, 302, 304), f"{what}: got {r}")
            self.assertEqual(r.body, expect[3:].encode(), f"{what}: got {r}")
        elif expect.startswith("any:"):
            if r is not None and r.status != 502:
                self.assertEqual(r.body, expect[4:].encode(), f"{what}: got {r}")
        closed = r is None or rd.eof or (r.header("Connection") or "").lower() == "close"
        # Never a second response for this request: nothing more arrives.
        if not closed:
            extra = rd.buf
            ready, _, _ = select.select([s], [], [], 0.3)
            if ready:
                try:
                    data = s.recv(65536)
                except ConnectionResetError:
                    data = b""
                closed = not data
                extra += data
            self.assertFalse(extra, f"{what}: bytes after the response: {extra!r}")
        # The next request gets a fresh answer (same connection if still open).
        if closed or rd.eof:
            s = self.connect(kg.port)
            rd = Reader(s, timeout=3.0)
        s.sendall(b"GET /fresh HTTP/1.1\r\nHost: test\r\n\r\n")
        r2 = rd.response()
        self.assertEqual((r2.status, r2.body, r2.header("X-Fresh")), (200, b"fresh", "1"),
                         f"{what}: the next request got {r2}")


# --- empty lines before a message ----------------------------------------------------------

FLOOD = b"\r\n" * (32 * 1024 + 1)     # 64 KiB + 2 bytes of empty lines


class EmptyLineFloods(Case):
    """Empty lines before a request (or a response) are skipped, but past
    the head limit they must be refused, never leave the parser stuck: a
    stuck parser spins its shard, and every connection on it hangs."""

    def served(self, kg, what):
        s = self.connect(kg.port, timeout=3)
        s.sendall(b"GET /size/3 HTTP/1.1\r\nHost: test\r\n\r\n")
        try:
            r = Reader(s, timeout=3.0).response()
        except (TimeoutError, EOFError, ConnectionResetError) as e:
            kg.stop(timeout=3)   # a wedged shard does not drain: do not wait for it
            self.fail(f"{what}: another client is not served any more ({e!r})")
        self.assertEqual((r.status, r.body), (200, b"abc"), what)

    def test_client_flood(self):
        be, kg = self.proxy("--drain-timeout", "1")
        s = self.connect(kg.port)
        s.sendall(FLOOD + b"GET /size/1 HTTP/1.1\r\nHost: test\r\n\r\n")
        time.sleep(0.3)
        self.served(kg, "a client sent 64 KiB of empty lines, then a request")
        try:
            r = Reader(s, timeout=3.0).response()
            self.assertTrue(r.status in (400, 431) or (r.status, r.body) == (200, b"a"), r)
        except (EOFError, ConnectionResetError):
            pass

    def test_shadow_flood(self):
        def handler(conn, index):
            while conn.read_request() is not None:
                conn.send(FLOOD + b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        sb = ScriptedBackend(handler)
        try:
            be = self.backend(name="master")
            kg = self.kage("--drain-timeout", "1", master=("production", be.port),
                           shadows=[("sandbox", sb.port)])
            s = self.connect(kg.port)
            s.sendall(b"GET /size/1 HTTP/1.1\r\nHost: test\r\n\r\n")
            try:
                r = Reader(s, timeout=3.0).response()
            except (TimeoutError, EOFError) as e:
                kg.stop(timeout=3)
                self.fail(f"a shadow sent 64 KiB of empty lines: the client's master response "
                          f"never came ({e!r})")
            self.assertEqual((r.status, r.body), (200, b"a"))
            time.sleep(0.3)
            self.served(kg, "a shadow sent 64 KiB of empty lines")
        finally:
            sb.close()
