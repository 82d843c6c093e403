#!/usr/bin/env python3
"""Writes what a microdash server holds of every series at raw resolution as the corpus file
`agent-hour.jsonl.gz` of the disk section (bench/src/disk.rs): a JSON line a series with its
metric, labels, timestamps (ms) and values (as the shortest strings that read back as the same
doubles). See README.md in this folder for how the recording was made.

    record.py --server http://127.0.0.1:18090 --token "$(cat data/default-tenant.token)" \
        --out agent-hour.jsonl.gz [--minutes 60]
"""
import argparse
import gzip
import json
import urllib.parse
import urllib.request


def get(server, token, path, **params):
    url = f"{server}{path}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request) as response:
        return json.load(response)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=int, default=60, help="keep the first MINUTES of the recording")
    args = parser.parse_args()
    metrics = get(args.server, args.token, "/api/v1/metrics")["metrics"]
    lines = []
    for metric in metrics:
        answer = get(args.server, args.token, "/api/v1/query", metric=metric, resolution="raw", **{"from": 0})
        for series in answer["series"]:
            points = series["points"]
            lines.append((metric, series["labels"], points))
    start = min(p[0][0] for _, _, p in lines if p)
    until = start + args.minutes * 60_000
    with gzip.open(args.out, "wt", compresslevel=9) as out:
        for metric, labels, points in sorted(lines, key=lambda l: (l[0], sorted(l[1].items()))):
            points = [p for p in points if p[0] < until]
            out.write(json.dumps({
                "metric": metric,
                "labels": labels,
                "ts": [p[0] for p in points],
                "values": [repr(float(p[1])) for p in points],
            }, separators=(",", ":")) + "\n")
    print(f"{len(lines)} series from {len(metrics)} metrics into {args.out}")


if __name__ == "__main__":
    main()
