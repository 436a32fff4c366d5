"""Drives the real rudder-sdk-python SDK against Shoal, configured as its docs say
(module-level write_key and dataPlaneUrl).

usage: rudder_python.py HOST WRITE_KEY PREFIX TIMESTAMP_MS

Prints JSON: each HTTP request the SDK made (observed at its HTTP session, wrapped, not
changed) and every error it reported.
"""
import json
import sys
from datetime import datetime, timezone

import rudderstack.analytics as rudder_analytics
from rudderstack.analytics import request as transport

host, write_key, prefix, at_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
at = datetime.fromtimestamp(at_ms / 1000, tz=timezone.utc)

seen = []
send = transport._session.post


def observed(url, **kwargs):
    response = send(url, **kwargs)
    seen.append({
        "path": url[len(host):],
        "encoding": kwargs["headers"].get("Content-Encoding"),
        "auth": "Basic" if kwargs.get("auth") else "",
        "status": response.status_code,
    })
    return response


transport._session.post = observed

errors = []
rudder_analytics.write_key = write_key
rudder_analytics.dataPlaneUrl = host
rudder_analytics.on_error = lambda error, batch: errors.append(str(error))
user = f"{prefix}-user"
rudder_analytics.identify(user, {"email": "grace@example.com", "plan": "team"},
                          timestamp=at, message_id=f"{prefix}-m1")
for number in range(5):
    rudder_analytics.track(user, "Exported", {"rows": 10 + number},
                           timestamp=at, message_id=f"{prefix}-t{number}")
rudder_analytics.group(user, f"{prefix}-acct", {"name": "Globex"},
                       timestamp=at, message_id=f"{prefix}-g1")
rudder_analytics.flush()
rudder_analytics.join()
print(json.dumps({"requests": seen, "errors": errors}))
