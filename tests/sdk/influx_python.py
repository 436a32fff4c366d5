"""Drives the real influxdb-client (Python) against Shoal's /api/v2/write.

usage: influx_python.py HOST TOKEN MODE TIMESTAMP_S
  MODE sync   — one synchronous gzip write of line protocol text and Point objects;
  MODE batch  — the batching writer (retries on 503), flushed on close.

Prints JSON: each HTTP request the client made (path, Content-Encoding, status; observed at its
HTTP connection pool, which is wrapped, not changed) and every error it raised or reported.
"""
import json
import sys

from influxdb_client import InfluxDBClient, Point, WritePrecision
from urllib3 import connectionpool
from influxdb_client.client.write_api import SYNCHRONOUS, WriteOptions

host, token, mode, at = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
errors = []
seen = []
# Observed per HTTP attempt at urllib3's connection pool: the client's retries happen inside
# urllib3, below its own REST layer.
send = connectionpool.HTTPConnectionPool._make_request


def observed(self, conn, method, url, body=None, headers=None, *args, **kwargs):
    response = send(self, conn, method, url, body, headers, *args, **kwargs)
    seen.append({
        "path": url.split("?")[0],
        "encoding": (headers or {}).get("Content-Encoding"),
        "status": response.status,
    })
    return response


connectionpool.HTTPConnectionPool._make_request = observed
records = [
    f'cpu,host=web1,region=eu usage=0.5,count=3i,up=true,note="fine" {at}',
    f"cpu,host=web1,region=eu usage=0.75,count=4i,up=false {at + 60}",
    Point("disk io").tag("path", "/var lib").field("used", 42.5).time(at, WritePrecision.S),
]
with InfluxDBClient(url=host, token=token, org="shoal", enable_gzip=True) as client:
    if mode == "sync":
        try:
            client.write_api(write_options=SYNCHRONOUS).write(
                bucket="metrics", record=records, write_precision=WritePrecision.S)
        except Exception as error:  # report, do not hide
            errors.append(str(error))
    else:
        options = WriteOptions(batch_size=100, flush_interval=500, retry_interval=500,
                               max_retries=3, max_retry_delay=2000, exponential_base=2)
        write_api = client.write_api(
            write_options=options,
            error_callback=lambda conf, data, error: errors.append(str(error)))
        write_api.write(bucket="metrics", record=records, write_precision=WritePrecision.S)
        write_api.close()
print(json.dumps({"requests": seen, "errors": errors}))
