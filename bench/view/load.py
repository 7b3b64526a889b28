"""Load generator for bench/view: load.py PORT URLLIST CLIENTS. Each client is a process with
one keep-alive connection fetching its share of the URLs; prints tiles/s, p50, p99 (ms), errors."""
import http.client
import multiprocessing as mp
import sys
import time


def client(args):
    port, urls = args
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    lat, bad = [], 0
    for u in urls:
        t = time.perf_counter()
        c.request("GET", u)
        r = c.getresponse()
        r.read()
        lat.append(time.perf_counter() - t)
        bad += r.status != 200
    c.close()
    return lat, bad


if __name__ == "__main__":
    port, n = int(sys.argv[1]), int(sys.argv[3])
    urls = [l.strip() for l in open(sys.argv[2]) if l.strip()]
    shares = [(port, urls[k::n]) for k in range(n)]
    with mp.Pool(n) as pool:
        t0 = time.perf_counter()
        res = pool.map(client, shares)
        wall = time.perf_counter() - t0
    lat = sorted(x for r in res for x in r[0])
    bad = sum(r[1] for r in res)
    print("%.0f %.2f %.2f %d" % (len(lat) / wall, 1e3 * lat[len(lat) // 2], 1e3 * lat[int(len(lat) * 0.99)], bad))
