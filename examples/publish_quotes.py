#!/usr/bin/env python3
"""Publishes a realistic stream of stock quotes to a fanout broker over HTTP.

Each symbol's price takes a random walk (small moves, occasional jumps) around
an opening price, and every update is POSTed to /api/publish as a batch of
{topic, data} items, topic `quotes.<EXCHANGE>.<SYMBOL>`. Python 3 standard
library only.

    python3 examples/publish_quotes.py                       # 50 symbols, 200 quotes/s
    python3 examples/publish_quotes.py --rate 1000 --symbols 500
    python3 examples/publish_quotes.py --url http://broker:8080 --key $PUBLISH_KEY
"""

import argparse
import json
import random
import sys
import time
import urllib.error
import urllib.request

NAMES = (
    "AAPL MSFT AMZN GOOG META NVDA TSLA NFLX ADBE INTC AMD CSCO ORCL CRM QCOM TXN AVGO IBM PYPL UBER "
    "SHOP SQ SNOW PLTR ABNB COIN ZM DOCU ROKU SPOT JPM BAC WFC GS MS C V MA AXP BLK "
    "KO PEP MCD SBUX NKE DIS WMT COST TGT HD LOW PG JNJ PFE MRK ABBV LLY UNH CVS XOM CVX"
).split()


def symbols(count):
    """`count` (exchange, symbol, opening price) triples: real tickers first, then made-up ones."""
    out = []
    for i in range(count):
        name = NAMES[i] if i < len(NAMES) else f"SYM{i:04d}"
        exchange = "NYSE" if i % 3 == 2 else "NASDAQ"
        out.append((exchange, name, round(random.uniform(10, 800), 2)))
    return out


def step(price, opening):
    """One tick of the walk: mostly tiny moves, a jump now and then, pulled back toward the open."""
    move = random.gauss(0, 0.0008) + (random.gauss(0, 0.01) if random.random() < 0.01 else 0)
    pull = (opening - price) / opening * 0.001
    return max(0.01, round(price * (1 + move + pull), 2))


def post(url, key, items):
    """POSTs one batch; returns how many items the broker refused."""
    req = urllib.request.Request(
        url.rstrip("/") + "/api/publish",
        data=json.dumps(items).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    if key:
        req.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(req, timeout=5) as res:
        return sum(1 for r in json.load(res) if "error" in r)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the broker (default %(default)s)")
    p.add_argument("--rate", type=float, default=200, help="quotes per second over all symbols (default %(default)s)")
    p.add_argument("--symbols", type=int, default=50, help="how many symbols (default %(default)s)")
    p.add_argument("--batches", type=float, default=10, help="HTTP requests per second (default %(default)s)")
    p.add_argument("--key", default="", help="a publish key, when the broker has auth on")
    p.add_argument("--duration", type=float, default=0, help="stop after this many seconds (default: run until Ctrl-C)")
    args = p.parse_args()

    book = {(ex, sym): (px, px) for ex, sym, px in symbols(args.symbols)}
    keys = list(book)
    per_batch = max(1, round(args.rate / args.batches))
    interval = per_batch / args.rate
    print(f"publishing {args.rate:g} quotes/s for {len(keys)} symbols to {args.url} (Ctrl-C stops)")
    start = next_at = time.monotonic()
    sent = 0
    while not args.duration or time.monotonic() - start < args.duration:
        items = []
        for ex, sym in random.choices(keys, k=per_batch):
            price, opening = book[(ex, sym)]
            price = step(price, opening)
            book[(ex, sym)] = (price, opening)
            quote = {"symbol": sym, "exchange": ex, "price": price, "open": opening,
                     "size": random.choice((100, 100, 200, 500, 1000)), "ts": int(time.time() * 1000)}
            items.append({"topic": f"quotes.{ex}.{sym}", "data": quote})
        try:
            refused = post(args.url, args.key, items)
            if refused:
                print(f"the broker refused {refused} of {len(items)} quotes", file=sys.stderr)
        except (urllib.error.URLError, OSError) as e:
            print(f"cannot publish to {args.url}: {e}; retrying", file=sys.stderr)
            time.sleep(1)
            next_at = time.monotonic()
        sent += len(items)
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    print(f"published {sent} quotes")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
