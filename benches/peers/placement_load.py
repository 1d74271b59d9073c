#!/usr/bin/env python3
"""The load benches/peers/placement.sh sends to a Placement API.

The same requests, byte for byte, go to weft and to the real Placement:
provider and consumer uuids are uuid5 of their names, so two fresh servers
populated by this script hold the same providers. Standard library only
(http.client, one keep-alive connection per client thread), so it runs on
any python3 and its own cost is the same for both servers.

Subcommands, each printing one JSON object on stdout:
  populate   N providers, each with VCPU/MEMORY_MB/DISK_GB inventories and a
             few traits (POST /resource_providers, PUT .../inventories,
             PUT .../traits, with the generations the previous call returned)
  candidates K timed GET /allocation_candidates; checks each answer holds
             min(N, limit) allocation requests, so both servers did the
             same search
  allocate   M allocation writes (PUT /allocations/{consumer}, new consumers
             with consumer_generation null), from C parallel clients,
             providers taken round-robin; writes/s over the wall clock
"""

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse
import uuid

MICROVERSION = "placement 1.36"
NAMESPACE = uuid.UUID("5e1f0a57-70e1-4b5c-9c6d-7a3a8e0b1234")
PROJECT = "8d2b6fd0e1b44d5c9a1f1e4c6a7b8c9d"
USER = "3c4d5e6f7a8b4c9d8e7f6a5b4c3d2e1f"
CUSTOM_TRAIT = "CUSTOM_BENCH_RACK_A"
# Sizes of a mid-size compute host; every provider has room for every
# allocation the bench makes (at most a few dozen per provider).
INVENTORIES = {
    "VCPU": {"total": 64, "allocation_ratio": 4.0},
    "MEMORY_MB": {"total": 262144, "reserved": 512, "allocation_ratio": 1.5},
    "DISK_GB": {"total": 2000, "allocation_ratio": 1.0},
}
REQUEST = {"VCPU": 1, "MEMORY_MB": 512, "DISK_GB": 10}


def provider_uuid(i):
    return str(uuid.uuid5(NAMESPACE, f"bench-rp-{i}"))


def traits_of(i):
    """A few traits, in different mixes: every provider has SSE4.2, half
    AVX2, a third an SSD, a fifth the custom rack trait."""
    traits = ["HW_CPU_X86_SSE42"]
    if i % 2 == 0:
        traits.append("HW_CPU_X86_AVX2")
    if i % 3 == 0:
        traits.append("STORAGE_DISK_SSD")
    if i % 5 == 0:
        traits.append(CUSTOM_TRAIT)
    return traits


class Client:
    """One keep-alive HTTP connection to the Placement API at `url`."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.prefix = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
        self.headers = {
            "X-Auth-Token": "admin",
            "OpenStack-API-Version": MICROVERSION,
            "Accept": "application/json",
        }

    def call(self, method, path, body=None):
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        try:
            return self._send(method, path, data, headers)
        except (ConnectionError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection: a new one,
            # once, as HTTP client libraries do.
            self.conn.close()
            return self._send(method, path, data, headers)

    def _send(self, method, path, data, headers):
        self.conn.request(method, self.prefix + path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def ok(self, method, path, body=None, want=(200, 201, 204)):
        status, raw = self.call(method, path, body)
        if status not in want:
            sys.exit(f"{method} {path}: {status} {raw[:500]!r}")
        return json.loads(raw) if raw else None


def populate(args):
    c = Client(args.url)
    start = time.monotonic()
    c.ok("PUT", f"/traits/{CUSTOM_TRAIT}")
    requests = 1
    for i in range(args.n):
        u = provider_uuid(i)
        rp = c.ok("POST", "/resource_providers", {"name": f"bench-rp-{i:05d}", "uuid": u})
        inv = c.ok(
            "PUT",
            f"/resource_providers/{u}/inventories",
            {"resource_provider_generation": rp["generation"], "inventories": INVENTORIES},
        )
        c.ok(
            "PUT",
            f"/resource_providers/{u}/traits",
            {"resource_provider_generation": inv["resource_provider_generation"], "traits": traits_of(i)},
        )
        requests += 3
    elapsed = time.monotonic() - start
    print(json.dumps({"providers": args.n, "seconds": elapsed, "requests_per_s": requests / elapsed}))


def percentile(sorted_values, p):
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, -(-len(sorted_values) * p // 100) - 1))
    return sorted_values[int(k)]


def candidates(args):
    c = Client(args.url)
    resources = ",".join(f"{k}:{v}" for k, v in REQUEST.items())
    path = f"/allocation_candidates?resources={resources}&limit={args.limit}"
    want = min(args.n, args.limit)

    def one():
        t0 = time.perf_counter()
        status, raw = c.call("GET", path)
        t1 = time.perf_counter()
        if status != 200:
            sys.exit(f"GET {path}: {status} {raw[:500]!r}")
        got = len(json.loads(raw)["allocation_requests"])
        if got != want:
            sys.exit(f"GET {path}: {got} allocation requests, want {want}")
        return (t1 - t0) * 1000.0

    for _ in range(args.warmup):
        one()
    times = sorted(one() for _ in range(args.k))
    print(json.dumps({"k": args.k, "p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99)}))


def allocate(args):
    """M writes split over C clients; write j of client t goes to provider
    (offset + t + j*C) mod N, for a new consumer named after the round."""
    errors = []
    per_client = [args.m // args.clients + (1 if t < args.m % args.clients else 0) for t in range(args.clients)]
    barrier = threading.Barrier(args.clients + 1)

    def worker(t):
        c = Client(args.url)
        # Open the connection before the clock starts.
        c.call("GET", "/")
        barrier.wait()
        for j in range(per_client[t]):
            i = args.offset + t + j * args.clients
            consumer = uuid.uuid5(NAMESPACE, f"{args.tag}-consumer-{i}")
            body = {
                "allocations": {provider_uuid(i % args.n): {"resources": REQUEST}},
                "project_id": PROJECT,
                "user_id": USER,
                "consumer_generation": None,
            }
            status, raw = c.call("PUT", f"/allocations/{consumer}", body)
            if status != 204:
                errors.append(f"{status} {raw[:300]!r}")

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.clients)]
    for th in threads:
        th.start()
    barrier.wait()
    start = time.monotonic()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - start
    if errors:
        print(f"{len(errors)} of {args.m} writes failed, first: {errors[0]}", file=sys.stderr)
    print(json.dumps({"writes": args.m, "clients": args.clients, "seconds": elapsed,
                      "writes_per_s": (args.m - len(errors)) / elapsed, "errors": len(errors)}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("populate")
    s.add_argument("--url", required=True)
    s.add_argument("--n", type=int, required=True)
    s.set_defaults(func=populate)
    s = sub.add_parser("candidates")
    s.add_argument("--url", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--k", type=int, default=100)
    s.add_argument("--limit", type=int, default=1000)
    s.add_argument("--warmup", type=int, default=3)
    s.set_defaults(func=candidates)
    s = sub.add_parser("allocate")
    s.add_argument("--url", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--m", type=int, default=300)
    s.add_argument("--clients", type=int, default=1)
    s.add_argument("--offset", type=int, default=0)
    s.add_argument("--tag", required=True)
    s.set_defaults(func=allocate)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
