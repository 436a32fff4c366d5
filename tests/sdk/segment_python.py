"""Drives the real segment-analytics-python SDK against Shoal.

usage: segment_python.py HOST WRITE_KEY PREFIX TIMESTAMP_MS

Sends one call of every kind, then prints JSON: each HTTP request the SDK made (observed at its
HTTP session, which is wrapped, not changed) and every error the SDK reported.
"""
import json
import sys
from datetime import datetime, timezone

from segment.analytics import Client
from segment.analytics import request as transport

host, write_key, prefix, at_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
at = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc)

seen = []
send = transport._session.post


def observed(url, **kwargs):
    response = send(url, **kwargs)
    seen.append({
        "path": url[len(host):],
        "encoding": kwargs["headers"].get("Content-Encoding"),
        "auth": kwargs["headers"].get("Authorization", "").split(" ")[0],
        "status": response.status_code,
    })
    return response


transport._session.post = observed

errors = []
client = Client(
    write_key,
    host=host,
    gzip=True,
    upload_interval=1.0,
    max_retries=3,
    on_error=lambda error, batch: errors.append(str(error)),
)
user = f"{prefix}-user"
client.identify(user, {"email": "ada@example.com", "plan": "pro", "seats": 3},
                timestamp=at, message_id=f"{prefix}-m1")
client.track(user, "Signed Up", {"source": "ad", "amount": 12.5}, context={"ip": "203.0.113.9"},
             timestamp=at, message_id=f"{prefix}-m2")
client.group(user, f"{prefix}-acct", {"name": "Acme", "employees": 40},
             timestamp=at, message_id=f"{prefix}-m3")
client.page(user, "Docs", "Install", {"url": "/install"}, timestamp=at, message_id=f"{prefix}-m4")
client.screen(user, None, "Home", {}, timestamp=at, message_id=f"{prefix}-m5")
client.alias(f"{prefix}-anon", user, timestamp=at, message_id=f"{prefix}-m6")
client.track(anonymous_id=f"{prefix}-anon", event="Viewed", timestamp=at, message_id=f"{prefix}-m7")
client.flush()
client.join()
print(json.dumps({"requests": seen, "errors": errors}))
