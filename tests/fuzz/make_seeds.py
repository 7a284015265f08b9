#!/usr/bin/env python3
"""Write the hand-made seed corpora of tests/fuzz/corpus/<target>/.

    python3 tests/fuzz/make_seeds.py

The seeds are committed; this script documents how each was made and
rewrites them all (files it does not name are left alone: inputs that
found bugs live beside them as regress-*, see tests/unit/test_fuzz_regressions.c).
"""
import gzip
import os
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
CRLF = b"\r\n"


def write(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def req(line, *headers, body=b""):
    return (line + CRLF + b"".join(h + CRLF for h in headers) + CRLF) + body


# --- fuzz_request: byte 0 = piece sizes, byte 1 = head options --------------------
H = b"Host: example.com"
REQUESTS = {
    "get": req(b"GET /a?b=1 HTTP/1.1", H, b"User-Agent: seed", b"Accept: */*"),
    "get10": req(b"GET / HTTP/1.0"),
    "get10_host_ka": req(b"GET / HTTP/1.0", H, b"Connection: keep-alive"),
    "post_cl": req(b"POST /submit HTTP/1.1", H, b"Content-Length: 5", body=b"hello"),
    "post_chunked": req(b"POST /c HTTP/1.1", H, b"Transfer-Encoding: chunked",
                        body=b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"),
    "pipelined": req(b"GET /1 HTTP/1.1", H) + req(b"POST /2 HTTP/1.1", H, b"Content-Length: 3",
                                                   body=b"abc") + req(b"HEAD /3 HTTP/1.1", H),
    "hop_by_hop": req(b"GET /h HTTP/1.1", H, b"Connection: keep-alive, X-Secret, Cookie",
                      b"X-Secret: 1", b"Cookie: a=b", b"Keep-Alive: 300", b"TE: trailers",
                      b"Trailer: X-T", b"Proxy-Connection: keep-alive", b"X-Kept: yes"),
    "xff": req(b"GET /x HTTP/1.1", H, b"X-Forwarded-For: 10.1.2.3", b"X-Forwarded-For: ,",
               b"X-Kage-Session: client-chosen"),
    "upgrade": req(b"GET /ws HTTP/1.1", H, b"Upgrade: websocket", b"Connection: Upgrade",
                   b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==") + b"\x81\x05hello",
    "expect": req(b"PUT /up HTTP/1.1", H, b"Expect: 100-continue", b"Content-Length: 2",
                  body=b"ok"),
    "connection_close": req(b"GET / HTTP/1.1", H, b"Connection: close") + req(b"GET /after HTTP/1.1", H),
    # The smuggling corpus (each must be refused or framed one way only).
    "cl_te": req(b"POST / HTTP/1.1", H, b"Content-Length: 6", b"Transfer-Encoding: chunked",
                 body=b"0\r\n\r\nG"),
    "te_cl": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked", b"Content-Length: 3",
                 body=b"8\r\nSMUGGLED\r\n0\r\n\r\n"),
    "te_space_colon": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding : chunked",
                          body=b"0\r\n\r\n"),
    "te_tab": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding:\tchunked", body=b"0\r\n\r\n"),
    "te_trailing_ws": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked \t",
                          body=b"0\r\n\r\n"),
    "te_fold": req(b"POST / HTTP/1.1", H, b"X: y", b" Transfer-Encoding: chunked",
                   body=b"0\r\n\r\n"),
    "te_fold2": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"),
    "te_xchunked": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"),
    "te_chunked_identity": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked, identity",
                               body=b"0\r\n\r\n"),
    "te_identity_chunked": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: identity, chunked",
                               body=b"0\r\n\r\n"),
    "te_double": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked",
                     b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
    "te_quoted": req(b"POST / HTTP/1.1", H, b'Transfer-Encoding: "chunked"', body=b"0\r\n\r\n"),
    "te_vt": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding:\x0bchunked", body=b"0\r\n\r\n"),
    "te_nul": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked\x00", body=b"0\r\n\r\n"),
    "te_x85": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: \x85chunked", body=b"0\r\n\r\n"),
    "te_name_lf": b"POST / HTTP/1.1\r\n" + H + b"\r\nTransfer-Encoding\n: chunked\r\n\r\n0\r\n\r\n",
    "bare_lf_te": b"POST / HTTP/1.1\r\n" + H + b"\r\nX: x\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "cr_te": b"POST / HTTP/1.1\r\n" + H + b"\r\nX-Abc: \rxTransfer-Encoding: chunked\r\n\r\n1\r\nA\r\n0\r\n\r\n",
    "cl_dup_diff": req(b"POST / HTTP/1.1", H, b"Content-Length: 3", b"Content-Length: 5",
                      body=b"hello"),
    "cl_dup_same": req(b"POST / HTTP/1.1", H, b"Content-Length: 5", b"Content-Length: 5",
                      body=b"hello"),
    "cl_list": req(b"POST / HTTP/1.1", H, b"Content-Length: 5, 5", body=b"hello"),
    "cl_huge": req(b"POST / HTTP/1.1", H, b"Content-Length: 99999999999999999999", body=b"x"),
    "cl_plus": req(b"POST / HTTP/1.1", H, b"Content-Length: +5", body=b"hello"),
    "cl_hex": req(b"POST / HTTP/1.1", H, b"Content-Length: 0x5", body=b"hello"),
    "cl_fold": req(b"POST / HTTP/1.1", H, b"X: y", b" Content-Length: 5", body=b"hello"),
    "chunk_hex_prefix": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked",
                            body=b"0x5\r\nhello\r\n0\r\n\r\n"),
    "chunk_huge": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked",
                      body=b"fffffffffffffffff\r\nhello\r\n0\r\n\r\n"),
    "chunk_no_crlf": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked",
                         body=b"5\r\nhelloGET / HTTP/1.1\r\n\r\n"),
    "chunk_ext_space": req(b"POST / HTTP/1.1", H, b"Transfer-Encoding: chunked",
                           body=b"5 ;ext\r\nhello\r\n0\r\n\r\n"),
    "no_host": req(b"GET / HTTP/1.1"),
    "two_hosts": req(b"GET / HTTP/1.1", H, b"Host: other"),
    "version_12": req(b"GET / HTTP/1.2", H),
    "version_20": req(b"GET / HTTP/2.0", H),
    "version_lower": req(b"GET / http/1.1", H),
    "no_version": b"GET /\r\n\r\n",
    "h2_preface": b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    "connect": req(b"CONNECT example.com:443 HTTP/1.1", b"Host: example.com:443"),
    "get_with_body": req(b"GET / HTTP/1.1", H, b"Content-Length: 33",
                         body=b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"),
    "leading_crlf": b"\r\n\r\n" + req(b"GET / HTTP/1.1", H),
    "te_10": req(b"POST / HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
}
OPTS = [b"\x00\x00", b"\x01\x05", b"\x07\x12", b"\x83\x19", b"\x00\x16"]
for i, (name, data) in enumerate(sorted(REQUESTS.items())):
    write("fuzz_request", name, OPTS[i % len(OPTS)] + data)


# --- fuzz_response: byte 0 = piece sizes, byte 1 = request method + client ----------
# byte 1: bits 0-2 the request's method (0 GET, 1 HEAD, 2 POST, 3 OPTIONS, others GET),
# bit 3 an HTTP/1.0 client, bit 4 the client asked to close.
def resp(line, *headers, body=b""):
    return req(line, *headers, body=body)


RESPONSES = {
    "cl": (0, resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Type: text/plain",
                   body=b"hello")),
    "chunked": (0, resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                        body=b"5;a=b\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")),
    "eof": (0, resp(b"HTTP/1.1 200 OK", b"Content-Type: text/plain", body=b"until close")),
    "eof10": (8, resp(b"HTTP/1.0 200 OK", body=b"until close")),
    "head": (1, resp(b"HTTP/1.1 200 OK", b"Content-Length: 100")),
    "head_chunked": (1, resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked")),
    "no_content": (0, resp(b"HTTP/1.1 204 No Content", b"Content-Length: 10")),
    "not_modified": (0, resp(b"HTTP/1.1 304 Not Modified", b"Content-Length: 10", b"ETag: x")),
    "continue": (2, resp(b"HTTP/1.1 100 Continue") + resp(b"HTTP/1.1 200 OK", b"Content-Length: 2",
                                                          body=b"ok")),
    "early_hints": (0, resp(b"HTTP/1.1 103 Early Hints", b"Link: </a>; rel=preload") +
                    resp(b"HTTP/1.1 200 OK", b"Content-Length: 0")),
    "switching": (0, resp(b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket",
                          b"Connection: Upgrade") + b"\x81\x02hi"),
    "hop": (0, resp(b"HTTP/1.1 200 OK", b"Connection: X-Bar, close", b"X-Bar: 1",
                    b"Keep-Alive: timeout=5", b"Content-Length: 0", b"Trailer: X-T",
                    b"Proxy-Connection: close")),
    "keepalive10": (8, resp(b"HTTP/1.0 200 OK", b"Connection: keep-alive", b"Content-Length: 2",
                            body=b"ok")),
    "two": (0, resp(b"HTTP/1.1 200 OK", b"Content-Length: 1", body=b"a") +
            resp(b"HTTP/1.1 200 OK", b"Content-Length: 1", body=b"b")),
    "cl_te": (0, resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Transfer-Encoding: chunked",
                      body=b"0\r\n\r\n")),
    "two_cl": (0, resp(b"HTTP/1.1 200 OK", b"Content-Length: 5", b"Content-Length: 6",
                       body=b"hello!")),
    "te_gzip_last": (0, resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked, gzip",
                             body=b"abc")),
    "bad_chunk": (0, resp(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked",
                          body=b"zz\r\nhello\r\n0\r\n\r\n")),
    "fold": (0, resp(b"HTTP/1.1 200 OK", b"X: a", b" Content-Length: 5", body=b"hello")),
    "bare_lf": (0, b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok"),
    "status_099": (0, resp(b"HTTP/1.1 099 Odd", b"Content-Length: 0")),
    "status_999": (0, resp(b"HTTP/1.1 999 Odd", b"Content-Length: 0")),
    "reason_empty": (0, b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n"),
    "no_reason": (0, b"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n"),
    "http2": (0, resp(b"HTTP/2.0 200 OK", b"Content-Length: 0")),
}
for name, (m, data) in sorted(RESPONSES.items()):
    write("fuzz_response", name, bytes([0, m]) + data)
    write("fuzz_response", name + "_split3", bytes([3, m]) + data)


# --- fuzz_diff: byte 0 = content types and codings, byte 1 = options --------------
# byte 0: bits 0-1 master type (0 json, 1 text, 2 problem+json, 3 none), bits 2-3
# the shadow's; bits 4-5 master coding (0 none, 1 gzip, 2 deflate, 3 gzip header
# over raw bytes), bits 6-7 the shadow's. byte 1: bit 0 truncated captures, bits
# 1-2 ignore_json set, bit 3 small max_items, bit 4 small max_decoded, bit 5
# status differs, bit 6 a header differs. Then master, "\n@@@\n", shadow,
# optionally "\n@@@\n" and the reference's body.
SEP = b"\n@@@\n"
DIFFS = {
    "json_value": (0x00, 0x00, [b'{"user":{"name":"Ann","id":7}}', b'{"user":{"name":"Anne","id":7}}']),
    "json_order": (0x00, 0x00, [b'{"a":1,"b":[1,2,3]}', b'{ "b" : [1,2,3], "a" : 1.0 }']),
    "json_array_insert": (0x00, 0x00, [b'[1,2,3,4]', b'[1,2,9,3,4]', b'[1,2,3,5]']),
    "json_types": (0x00, 0x40, [b'{"a":1,"b":null,"c":"x"}', b'{"a":"1","b":false,"d":[]}']),
    "json_escapes": (0x00, 0x00, [b'{"a~b/c":"\\u00e9\\n","x":"\\ud83d\\ude00"}',
                                  b'{"a~b/c":"\xc3\xa9\\n","x":"y"}']),
    "json_ignore": (0x00, 0x02, [b'{"ts":1,"items":[{"id":1,"t":2}]}',
                                 b'{"ts":2,"items":[{"id":1,"t":3}]}']),
    "json_noise": (0x00, 0x04, [b'{"ts":1,"v":1}', b'{"ts":2,"v":2}', b'{"ts":3,"v":1}']),
    "json_numbers": (0x00, 0x00, [b'[1e2,100,0.1,1E-400,-0,12345678901234567890]',
                                  b'[100.0,1e2,1e-1,0,0,12345678901234567891]']),
    "json_deep": (0x00, 0x00, [b'[' * 40 + b']' * 40, b'[' * 40 + b'1' + b']' * 40]),
    "json_bad": (0x00, 0x00, [b'{"a":', b'{"a":1}']),
    "json_nul_key": (0x00, 0x00, [b'{"a\\u0000b":1,"a":1}', b'{"a\\u0000b":2,"a":1}']),
    "text": (0x05, 0x00, [b"hello world, the time is 12:00:01 today",
                          b"hello world, the time is 12:00:02 today"]),
    "text_noise": (0x05, 0x00, [b"id=1 ts=100 name=ann", b"id=1 ts=101 name=anne",
                                b"id=1 ts=102 name=ann"]),
    "gzip_json": (0x50, 0x00, [b'{"a":[1,2,3]}', b'{"a":[1,2,4]}']),
    "deflate_text": (0xa5, 0x00, [b"abc def ghi", b"abc deF ghi"]),
    "bad_gzip": (0xf5, 0x00, [b"not really gzip", b"not really gzip!"]),
    "truncated": (0x05, 0x01, [b"a" * 300 + b"b", b"a" * 300 + b"c"]),
    "status": (0x00, 0x20, [b'{}', b'{}']),
    "max_items": (0x00, 0x08, [b'{"a":1,"b":2,"c":3,"d":4}', b'{"a":2,"b":3,"c":4,"d":5}']),
    "problem_json": (0x0a, 0x00, [b'{"type":"about:blank","status":400}',
                                  b'{"type":"about:blank","status":404}']),
}
for name, (b0, b1, parts) in sorted(DIFFS.items()):
    write("fuzz_diff", name, bytes([b0, b1]) + SEP.join(parts))


# --- fuzz_config: argv, one argument per line ---------------------------------------
CONFIGS = {
    "minimal": ["--master", "production=127.0.0.1:8080"],
    "full": ["--master", "production=127.0.0.1:8080", "--shadow", "sandbox=127.0.0.1:8081,sample=50,timeout=2.5,body-max=64KiB",
             "--shadow", "ref=[::1]:8082", "--reference", "ref", "--listen", ":9000", "-t", "2",
             "--pin-cpus", "0-1", "--ring-entries", "1000", "--buffers", "100", "--buffer-size", "4k",
             "--max-conns", "10", "--client-timeout", "1.5", "--backend-timeout", "500ms",
             "--shadow-timeout", "3s", "--shadow-methods", "GET,HEAD,POST", "--shadow-path", "/api",
             "--shadow-path", "/v2", "--shadow-sample", "12.5", "--shadow-sample-key", "header:X-User",
             "--shadow-max-inflight", "7", "--shadow-body-max", "1MiB", "--shadow-memory", "1G",
             "--set-header", "*=X-Env: shadow", "--remove-header", "sandbox=Cookie",
             "--session-header", "X-Sess", "--capture-max", "100000", "--ignore-header", "X-Request-Id",
             "--ignore-json", "/meta/*/ts", "--ignore-json", "/a~1b~0c", "--noise-relative", "0.5",
             "--noise-absolute", "0", "--redact-header", "X-Token", "--diff-log", "/tmp/x.jsonl",
             "--diff-log-all", "--drain-timeout", "0", "--access-log", "-", "--send-zc", "-d"],
    "equals": ["--master=production=localhost:80", "--threads=1", "-q", "-t4", "--session-header="],
    "bundle": ["-dq", "-m", "m=127.0.0.1:1", "-s", "s=127.0.0.1:2", "-l", "[::]:0"],
    "help": ["--help"],
    "version": ["-V"],
    "bad_threads": ["--master", "p=127.0.0.1:1", "--threads", "x"],
    "dup_backend": ["--master", "p=127.0.0.1:1", "--shadow", "p=127.0.0.1:2"],
    "framing_edit": ["--master", "p=127.0.0.1:1", "--set-header", "*=Host: x"],
    "cookie_key": ["--master", "p=127.0.0.1:1", "--shadow-sample-key", "cookie:sid", "--shadow-sample", "0.01"],
    "query_key": ["--master", "p=127.0.0.1:1", "--shadow-sample-key", "query:u", "--plugin", "x.so:arg", "--admin", ":9001"],
    "check": ["--check", "--master", "p=127.0.0.1:1", "--", ],
}
for name, argv in sorted(CONFIGS.items()):
    write("fuzz_config", name, "\n".join(argv).encode())
write("fuzz_config", "nul_separated", b"--master\0production=127.0.0.1:8080\0--shadow\0s=127.0.0.1:8081")

FILES = {
    "minimal": "master = production=127.0.0.1:8080\n",
    "full": """# a full configuration
listen = 127.0.0.1:9000
threads = 2
master = production=127.0.0.1:8080
shadow = sandbox=127.0.0.1:8081,sample=50
shadow = ref=127.0.0.1:8082
reference = ref
shadow-methods = GET,HEAD
shadow-path = /api
shadow-sample = 99.5
shadow-sample-key = cookie:sid
set-header = *=X-Env: shadow
remove-header = sandbox=Cookie
ignore-json = /items/*/id
ignore-header = X-Id
redact-header = X-Token
capture-max = 64KiB
diff-log-all = true
send-zc = false
client-timeout = 250ms
""",
    "bad_line": "master = p=127.0.0.1:1\nthis is not a pair\n",
    "cli_only": "master = p=127.0.0.1:1\ncheck = true\n",
    "dashes": "--master = p=127.0.0.1:1\n",
    "spaces": "  master\t=   p=127.0.0.1:1   \n\n# comment\n   # indented comment\n",
}
for name, text in sorted(FILES.items()):
    write("fuzz_config_file", name, text.encode())
