"""Times `POST /api/publish` with a 1,000-item JSON batch, to 1,000 new topics and
then to one topic: the median and range of RUNS posts after one warm-up, in ms.

    python3 loadtest/batch_publish.py HOST PORT [RUNS]

Standard library only. Every item must be answered with a seq, or it fails.
"""
import http.client
import json
import statistics
import sys
import time
import uuid


def post(host, port, body):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    start = time.perf_counter()
    conn.request("POST", "/api/publish", body, {"content-type": "application/json"})
    response = conn.getresponse()
    data = response.read()
    ms = (time.perf_counter() - start) * 1000
    if response.status != 200:
        sys.exit(f"POST /api/publish answered {response.status}: {data[:200]!r}")
    refused = [a for a in json.loads(data) if "seq" not in a]
    if refused:
        sys.exit(f"{len(refused)} items refused, such as {refused[0]}")
    return ms


def main():
    host, port = sys.argv[1], int(sys.argv[2])
    runs = int(sys.argv[3]) if len(sys.argv) > 3 else 15
    for shape in ("1000 topics", "1 topic"):
        times = []
        for i in range(runs + 1):
            run = uuid.uuid4().hex[:8]
            topic = (lambda k: f"b{run}.t{k}") if shape == "1000 topics" else (lambda k: f"b{run}.one")
            items = [{"topic": topic(k), "data": {"k": k, "pad": "x" * 60}} for k in range(1000)]
            ms = post(host, port, json.dumps(items))
            if i:  # the first post warms up
                times.append(ms)
        print(f"{shape}: median {statistics.median(times):.1f} ms "
              f"(min {min(times):.1f}, max {max(times):.1f}, {runs} posts)")


if __name__ == "__main__":
    main()
