"""magpie view's report route (stdlib only): report_checks.py PORT RUN_DIR
RUN_DIR is the `magpie run` folder the server was given (report id 0). Its report.html and the
images under it are served byte for byte with the sandboxing headers; traversal, other file
types, hidden files and a symlink leading out of the folder are 404; the catalog links the
report."""
import http.client
import json
import os
import sys

port, run_dir = int(sys.argv[1]), sys.argv[2]
fails = []


def no(msg):
    fails.append(msg)
    print("FAIL: " + msg)


def req(path, method="GET"):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
    c.putheader("Host", "127.0.0.1:%d" % port)
    c.endheaders()
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, data, r


st, data, _ = req("/api/catalog")
cat = json.loads(data)
if cat.get("reports") != [{"id": 0, "name": os.path.basename(run_dir), "url": "/r/0/report.html"}]:
    no("catalog reports: %s" % cat.get("reports"))

want = open(os.path.join(run_dir, "report.html"), "rb").read()
st, data, r = req("/r/0/report.html")
if st != 200 or data != want:
    no("report.html: %d, %d bytes (want the file's %d)" % (st, len(data), len(want)))
csp = r.getheader("Content-Security-Policy") or ""
# sandboxed with scripts (its sort), never with its own origin, loading nothing from elsewhere
directives = [d.strip() for d in csp.split(";")]
if "sandbox allow-scripts" not in directives or "allow-same-origin" in csp or "default-src 'none'" not in directives:
    no("report CSP: %r" % csp)
if r.getheader("Content-Type") != "text/html; charset=utf-8" or r.getheader("X-Content-Type-Options") != "nosniff":
    no("report headers: %s" % r.getheaders())
st, data, r = req("/r/0/report.html", method="HEAD")
if st != 200 or data or r.getheader("Content-Length") != str(len(want)):
    no("HEAD report.html: %d, Content-Length %s" % (st, r.getheader("Content-Length")))

# an image under the folder, and one reached through a symlink that stays inside
thumb = sorted(f for f in os.listdir(os.path.join(run_dir, "thumbs")) if f.endswith(".jpg") and f != "alias.jpg")[0]
for name in (thumb, "alias.jpg"):
    st, data, r = req("/r/0/thumbs/" + name)
    if st != 200 or data != open(os.path.join(run_dir, "thumbs", thumb), "rb").read() or \
            r.getheader("Content-Type") != "image/jpeg" or "sandbox allow-scripts" not in (r.getheader("Content-Security-Policy") or ""):
        no("thumbs/%s: %d %s" % (name, st, r.getheader("Content-Type")))

evil = ["/r/0/../dataset.db", "/r/0/..%2fdataset.db", "/r/0/%2e%2e/%2e%2e/etc/passwd", "/r/0/thumbs/../../x/report.html",
        "/r/0//etc/passwd", "/r/0/dataset.db", "/r/0/status.csv", "/r/0/summary.json", "/r/0/heatmaps",
        "/r/0/thumbs/leak.svg", "/r/0/thumbs/", "/r/0/.hidden.png", "/r/0/thumbs/.%2e/.%2e/secret.svg",
        "/r/0/report.html%00.png", "/r/1/report.html", "/r/-1/report.html", "/r/0", "/r/0/",
        "/r/0/thumbs/..%5c..%5csecret.svg", "/r/0/a/b/c/d/e.png", "/r/0/" + run_dir + "/report.html",
        "/r/0/heatmaps/%s/heatmap.tif" % thumb[:-4]]
for p in evil:
    st, data, _ = req(p)
    if st != 404:
        no("%s: status %d, want 404" % (p, st))
    if b"SECRET" in data or b"SQLite format" in data or b"root:" in data:
        no("%s: served a file's content" % p)
print("report: %d bytes served, %d refused paths" % (len(want), len(evil)))
sys.exit(1 if fails else 0)
