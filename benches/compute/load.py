#!/usr/bin/env python3
"""Drives a `weft serve` for the compute benchmarks (stdlib only).

  sched  N servers created by C parallel clients on many fake hosts: the
         scheduler's decisions per second (servers out of BUILD over the wall
         clock from the first POST to the last one settled), and how many went
         ACTIVE / ERROR.
  boot   N servers with real guests created one after another: create ->
         ACTIVE seconds per server (POST to ACTIVE seen by polling every 50 ms).

Prints one JSON object on stdout.
"""
import argparse
import json
import statistics
import threading
import time
import urllib.error
import urllib.request


def call(base, token, method, path, body=None, headers=None, raw=None):
    h = {"X-Auth-Token": token} if token else {}
    h.update(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=data, method=method, headers=h)
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            text = r.read()
            return r.status, r.headers, (json.loads(text) if text else None)
    except urllib.error.HTTPError as e:
        text = e.read()
        try:
            return e.code, e.headers, json.loads(text)
        except ValueError:
            return e.code, e.headers, text


def token(base, password):
    st, h, b = call(base, None, "POST", "/identity/v3/auth/tokens", {"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}})
    assert st == 201, (st, b)
    return h["X-Subject-Token"], b["token"]["project"]["id"]


def ok(r, *codes):
    assert r[0] in codes, r
    return r[2]


def setup(base, tok, project, image_file, net_type):
    cv = {"OpenStack-API-Version": "compute 2.79"}
    img = ok(call(base, tok, "POST", "/image/v2/images", {
        "name": "bench-img", "disk_format": "qcow2", "container_format": "bare"}), 201)
    with open(image_file, "rb") as f:
        ok(call(base, tok, "PUT", "/image/v2/images/%s/file" % img["id"], raw=f.read(),
                headers={"Content-Type": "application/octet-stream"}), 204)
    ok(call(base, tok, "POST", "/compute/v2.1/flavors", {"flavor": {
        "name": "bench.one", "id": "bench.one", "vcpus": 1, "ram": 128, "disk": 1}},
        headers=cv), 200)
    net = {"name": "bench-net"}
    if net_type:
        net["provider:network_type"] = net_type
    n = ok(call(base, tok, "POST", "/networking/v2.0/networks", {"network": net}), 201)
    ok(call(base, tok, "POST", "/networking/v2.0/subnets", {"subnet": {
        "network_id": n["network"]["id"], "ip_version": 4, "cidr": "10.90.0.0/16"}}), 201)
    r = call(base, tok, "PUT", "/compute/v2.1/os-quota-sets/" + project, {"quota_set": {
        "instances": 100000, "cores": 100000, "ram": 100000000}}, headers=cv)
    if r[0] not in (200,):
        print("warning: quota update answered %s" % (r,), flush=True)
    return img["id"], n["network"]["id"]


def create(base, tok, image, net, name):
    b = ok(call(base, tok, "POST", "/compute/v2.1/servers", {"server": {
        "name": name, "imageRef": image, "flavorRef": "bench.one",
        "networks": [{"uuid": net}]}}, headers={"OpenStack-API-Version": "compute 2.79"}), 202)
    return b["server"]["id"]


def status(base, tok, sid):
    b = ok(call(base, tok, "GET", "/compute/v2.1/servers/" + sid), 200)
    return b["server"]["status"]


def sched(base, tok, image, net, n, clients):
    ids, lock = [], threading.Lock()
    todo = iter(range(n))

    def worker():
        while True:
            with lock:
                i = next(todo, None)
            if i is None:
                return
            sid = create(base, tok, image, net, "s%d" % i)
            with lock:
                ids.append(sid)

    t0 = time.monotonic()
    ts = [threading.Thread(target=worker) for _ in range(clients)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    posted = time.monotonic() - t0
    while True:
        b = ok(call(base, tok, "GET", "/compute/v2.1/servers/detail?all_tenants=1&limit=100000"), 200)
        st = [s["status"] for s in b["servers"] if s["id"] in set(ids)]
        if len(st) == n and "BUILD" not in st:
            break
        time.sleep(0.05)
    wall = time.monotonic() - t0
    return {"servers": n, "clients": clients, "post_s": round(posted, 3),
            "wall_s": round(wall, 3), "decisions_per_s": round(n / wall, 1),
            "active": st.count("ACTIVE"), "error": st.count("ERROR"),
            "faults": faults(b["servers"], ids)}


def faults(servers, ids):
    """Counts the fault messages of the servers that went ERROR, so that a
    run that loses servers says why without a second look."""
    out = {}
    for s in servers:
        if s["id"] in set(ids) and s["status"] == "ERROR":
            m = (s.get("fault") or {}).get("message", "(no fault)")
            out[m] = out.get(m, 0) + 1
    return out


def boot(base, tok, image, net, n):
    """Each server is deleted (and gone) before the next is made: a host of
    2 cores holds 8 vCPUs at the default 4.0 overcommit, so 10 live 1-vCPU
    guests do not fit, and guests left running would eat the CPU the next
    build is timed on."""
    times, ids = [], []
    for i in range(n):
        t0 = time.monotonic()
        sid = create(base, tok, image, net, "b%d" % i)
        while True:
            s = status(base, tok, sid)
            if s != "BUILD":
                break
            time.sleep(0.05)
        if s != "ACTIVE":
            b = call(base, tok, "GET", "/compute/v2.1/servers/" + sid)[2]
            raise SystemExit("server %s went %s: %s" % (sid, s, b["server"].get("fault")))
        times.append(time.monotonic() - t0)
        ids.append(sid)
        ok(call(base, tok, "DELETE", "/compute/v2.1/servers/" + sid), 204)
        deadline = time.monotonic() + 120
        while call(base, tok, "GET", "/compute/v2.1/servers/" + sid)[0] != 404:
            assert time.monotonic() < deadline, "delete of %s did not finish" % sid
            time.sleep(0.2)
    return {"servers": ids, "create_to_active_s": [round(t, 3) for t in times],
            "p50_s": round(statistics.median(times), 3)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--base", required=True)
    p.add_argument("--password", required=True)
    p.add_argument("--image-file", required=True)
    p.add_argument("--mode", choices=["sched", "boot"], required=True)
    p.add_argument("--servers", type=int, default=10)
    p.add_argument("--clients", type=int, default=4)
    p.add_argument("--net-type", default="")
    a = p.parse_args()
    tok, project = token(a.base, a.password)
    image, net = setup(a.base, tok, project, a.image_file, a.net_type)
    if a.mode == "sched":
        out = sched(a.base, tok, image, net, a.servers, a.clients)
    else:
        out = boot(a.base, tok, image, net, a.servers)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
