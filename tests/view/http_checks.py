"""magpie view over HTTP (stdlib only): http_checks.py PORT DATASET_DB SLOW_PORT
Traversal attempts, methods, Host, sizes, the dataset routes, many concurrent clients, and the
connection limits on a second server started with --per-ip 4 --timeout 2 (SLOW_PORT)."""
import http.client
import json
import socket
import sqlite3
import sys
import threading
import time

port, db_path, slow_port = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
fails = []


def no(msg):
    fails.append(msg)
    print("FAIL: " + msg)


def req(path, method="GET", headers=None, body=None, p=None):
    c = http.client.HTTPConnection("127.0.0.1", p or port, timeout=30)
    # skip_host: some checks send their own Host; the path goes out exactly as written
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    h = {"Host": "127.0.0.1:%d" % (p or port)}
    h.update(headers or {})
    for k, v in h.items():
        if v is not None:
            c.putheader(k, v)
    if body is not None:
        c.putheader("Content-Length", str(len(body)))
    c.endheaders(body)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r.getheader("Content-Type")


# ---- traversal: nothing outside the catalog, whatever the path says ----
evil = ["/s/0/slide_files/..%2f..%2f..%2f..%2fetc%2fpasswd", "/s/0/../../../../etc/passwd", "/etc/passwd",
        "//etc/passwd", "/s/0/slide_files/%2e%2e/%2e%2e/etc/passwd", "/..%2f..%2fetc%2fpasswd",
        "/s/0/slide_files/0/0_0.jpeg/../../../../etc/passwd", "/s/%2e%2e/slide.dzi", "/s/-1/slide.dzi",
        "/s/0%00/slide.dzi", "/s/99999999999/slide.dzi", "/d/0/img/..%2f..%2fdataset.db",
        "/s/0/slide_files/1/0_0.jpeg%00.png", "/view.js/../../etc/passwd", "/s/0/heat/0_files/..%2f0/0_0.png",
        "/" + "%2e%2e%2f" * 20 + "etc/passwd", "/s/0/mask.png/..", "/" + db_path, "/s/0/" + db_path]
for p in evil:
    st, data, _ = req(p)
    if st not in (400, 403, 404):
        no("%s: status %d, want 400/403/404" % (p, st))
    if b"root:" in data or b"SQLite format" in data:
        no("%s: served a file's content" % p)
# an absolute URL in the request line (proxy form) is no way around it either
st, data, _ = req("http://127.0.0.1:%d/etc/passwd" % port)
if st not in (400, 403, 404) or b"root:" in data:
    no("absolute-form request: status %d" % st)

# ---- read-only, bounded ----
for m in ("POST", "PUT", "DELETE", "PATCH"):
    try:
        st, _, _ = req("/api/catalog", method=m, body=b"x" * 100)
        if st < 400:
            no("%s answered %d" % (m, st))
    except (ConnectionError, http.client.HTTPException):
        pass  # closed unread: also a refusal
st, _, _ = req("/api/catalog", headers={"Host": "evil.example:80"})
if st != 403:
    no("a foreign Host (DNS rebinding) answered %d, want 403" % st)
st, _, _ = req("/api/catalog", headers={"Host": "localhost:%d" % port})
if st != 200:
    no("Host localhost answered %d" % st)
st, _, _ = req("/s/0/" + "a" * 2000)
if st != 414:
    no("a 2000-byte URL answered %d, want 414" % st)
try:  # 200 KB of headers: past the per-connection memory bound
    st, _, _ = req("/api/catalog", headers={"X-Big": "b" * 200000})
    if st < 400:
        no("200 KB of headers answered %d" % st)
except (ConnectionError, http.client.HTTPException):
    pass
st, data, ct = req("/api/catalog")
if st != 200:
    no("the server stopped answering after the bad requests (%d)" % st)
cat = json.loads(data)
names = [s["name"] for s in cat["slides"]]
if "outside" in names:
    no("a symlink leading out of a given folder was followed: %s" % names)

# ---- the dataset: query language and stored images ----
st, data, _ = req("/d/0/query?q=tissue%20%3E%200.5&limit=5")
r = json.loads(data) if st == 200 else {}
con = sqlite3.connect("file:%s?mode=ro" % db_path, uri=True)
want = con.execute("SELECT count(*) FROM patches WHERE tissue > 0.5").fetchone()[0]
if r.get("count") != want or len(r.get("rows", [])) != min(5, want):
    no("query tissue > 0.5: %s, want count %d" % (data[:200], want))
st, data, _ = req("/d/0/query?q=tissue%20%3E")
if st != 400 or b"column" not in data:
    no("a bad expression: %d %s" % (st, data))
inj = "label = 'x'; DROP TABLE patches; --'"
st, data, _ = req("/d/0/query?q=" + "".join("%%%02X" % b for b in inj.encode()))
if st not in (200, 400):
    no("injection attempt answered %d" % st)
if con.execute("SELECT count(*) FROM patches").fetchone()[0] == 0:
    no("patches emptied")
pid, blob, codec = con.execute("SELECT patch_id, data, codec FROM images ORDER BY patch_id, mag DESC LIMIT 1").fetchone()
st, data, ct = req("/d/0/img/%d" % pid)
if st != 200 or data != blob or ct != ("image/png" if codec == "png" else "image/jpeg"):
    no("patch image %d: %d %s, %d bytes (want the stored %d)" % (pid, st, ct, len(data), len(blob)))
for p in ("/d/0/img/999999999", "/d/5/query", "/d/0/img/1?mag=-1"):
    st, _, _ = req(p)
    if st not in (400, 404):
        no("%s answered %d" % (p, st))

# ---- many concurrent clients: every answer complete and the same as alone ----
urls = ["/s/0/slide_files/%d/%d_%d.jpeg" % (L, c, r) for L in (10, 11, 12) for c in range(3) for r in range(2)]
urls += ["/s/0/heat/0_files/11/%d_%d.png" % (c, r) for c in range(2) for r in range(2)]
urls += ["/s/1/slide_files/12/%d_%d.jpeg" % (c, c) for c in range(4)] + ["/api/catalog", "/s/0/grid.json"]
alone = {}
for u in urls:
    st, data, _ = req(u)
    if st != 200:
        no("%s: %d" % (u, st))
    alone[u] = data
errors = []


def client(k):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)  # keep-alive: one connection, many requests
    for i in range(len(urls)):
        u = urls[(i + k) % len(urls)]
        try:
            c.request("GET", u)
            r = c.getresponse()
            d = r.read()
            if r.status != 200 or d != alone[u]:
                errors.append("%s: %d, %d bytes" % (u, r.status, len(d)))
        except Exception as e:  # noqa: BLE001 - every failure is a finding
            errors.append("%s: %s" % (u, e))
            c.close()
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    c.close()


threads = [threading.Thread(target=client, args=(k,)) for k in range(24)]
t0 = time.time()
for t in threads:
    t.start()
for t in threads:
    t.join()
if errors:
    no("%d of %d concurrent requests failed, e.g. %s" % (len(errors), 24 * len(urls), errors[:3]))
print("concurrent: 24 clients x %d requests in %.1f s" % (len(urls), time.time() - t0))

# ---- limits on the second server: --per-ip 4 --timeout 2 ----
idle = []
for i in range(4):
    s = socket.create_connection(("127.0.0.1", slow_port))
    s.sendall(b"GET /api/catalog HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # a slow client: headers never end
    idle.append(s)
time.sleep(0.3)
s5 = socket.create_connection(("127.0.0.1", slow_port))
s5.settimeout(5)
try:
    s5.sendall(b"GET /api/catalog HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
    got = s5.recv(100)
except OSError:
    got = b""
if got.startswith(b"HTTP/1.1 200") or got.startswith(b"HTTP/1.0 200"):
    no("a fifth connection from one address was served past --per-ip 4")
s5.close()
# the slow clients are dropped after the timeout, and the server serves again
time.sleep(3.5)
for s in idle:
    s.settimeout(3)
    try:
        left = s.recv(100)
    except OSError:
        left = b""
    if left and not left.startswith(b"HTTP/1.1 408") and not left.startswith(b"HTTP/1.1 4"):
        no("an idle connection got %r after the timeout" % left[:40])
    s.close()
st, _, _ = req("/api/catalog", p=slow_port)
if st != 200:
    no("after the slow clients timed out the server answered %d" % st)
sys.exit(1 if fails else 0)
