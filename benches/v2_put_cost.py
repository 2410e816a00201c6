#!/usr/bin/env python3
# v2 put cost against the v2 store size: fills N keys through /v2/keys (100 per directory),
# then times 300 sequential PUTs on one keep-alive connection. Usage:
#   python3 benches/v2_put_cost.py BINARY N   (BINARY: target/release/rusted or /usr/bin/etcd)
import http.client, sys, time, subprocess, tempfile, os, shutil
bin_, n = sys.argv[1], int(sys.argv[2])
d = tempfile.mkdtemp()
ip = "127.0.0.192"
p = subprocess.Popen([bin_, "--data-dir", d, "--listen-client-urls", f"http://{ip}:2379", "--advertise-client-urls", f"http://{ip}:2379",
    "--listen-peer-urls", f"http://{ip}:2380", "--initial-advertise-peer-urls", f"http://{ip}:2380", "--initial-cluster", f"default=http://{ip}:2380",
    "--enable-v2"] + sys.argv[3:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    for _ in range(100):
        try:
            c = http.client.HTTPConnection(ip, 2379, timeout=10); c.request("GET", "/health"); c.getresponse().read(); break
        except Exception: time.sleep(0.1)
    c = http.client.HTTPConnection(ip, 2379, timeout=30)
    h = {"Content-Type": "application/x-www-form-urlencoded"}
    for i in range(n):
        c.request("PUT", f"/v2/keys/fill/d{i//100}/k{i}", body=f"value=v{i:064d}", headers=h); c.getresponse().read()
    m = 300
    t0 = time.time()
    for i in range(m):
        c.request("PUT", f"/v2/keys/probe/k{i}", body="value=x", headers=h); c.getresponse().read()
    dt = (time.time() - t0) / m
    print(f"{n} keys: {dt*1e3:.2f} ms per sequential v2 put")
finally:
    p.terminate(); p.wait(); shutil.rmtree(d)
