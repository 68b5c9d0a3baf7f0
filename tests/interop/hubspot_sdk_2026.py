"""Drives the REST gateway with HubSpot's new Python SDK (PyPI `hubspot-sdk`),
which calls the 2026-03 date-versioned paths.

Run by tests/hubspot_interop.rs with the gateway's URL and a bearer token as
its arguments. Checks what the SDK itself can (its models parse every
answer, its errors carry the status) and prints a JSON report of what it
read, which the Rust test compares with gRPC reads of the same records.
"""
import json
import sys

import hubspot_sdk
from hubspot_sdk import HubSpot

BASE, TOKEN = sys.argv[1], sys.argv[2]
report = {"paths": []}


def record_path(request):
    report["paths"].append(request.url.path)


client = HubSpot(access_token=TOKEN, base_url=BASE, max_retries=0)
client._client.event_hooks["request"].append(record_path)
associations = client.crm.associations
schema = client.crm.associations_schema


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# A token the service does not know: the SDK's own 401 error.
try:
    HubSpot(access_token="not-a-token", base_url=BASE, max_retries=0).crm.associations_schema.labels.list_labels(
        "companies", from_object_type="contacts"
    )
    raise AssertionError("an unknown token was served")
except hubspot_sdk.AuthenticationError as err:
    report["unknown_token"] = [err.status_code, err.body.get("category")]

# Labels: create one, read them back.
made = schema.labels.create_label("companies", from_object_type="contacts", label="Partner", name="partner")
partner = next(t.type_id for t in made.results if t.label == "Partner")
report["partner_type"] = partner
labels = schema.labels.list_labels("companies", from_object_type="contacts")
report["labels"] = sorted(t.label or "" for t in labels.results)

# A limit of 3 partners per contact, then five partners: a 207 with two errors.
schema.labels.batch_create(
    "companies",
    from_object_type="contacts",
    inputs=[{"category": "USER_DEFINED", "type_id": partner, "max_to_object_ids": 3}],
)
configured = schema.limits.get_by_object_types("companies", from_object_type="contacts")
report["limits"] = sorted(c.user_enforced_max_to_object_ids for c in configured.results if c.user_enforced_max_to_object_ids)
spec = {"association_category": "USER_DEFINED", "association_type_id": partner}
raw = associations.batch.with_raw_response.create(
    "companies",
    from_object_type="contacts",
    inputs=[{"from": {"id": "1"}, "to": {"id": str(c)}, "types": [spec]} for c in range(1, 6)],
)
created = raw.parse()
body = raw.http_response.json()
report["partner_create"] = [raw.status_code, sorted(int(r.to_object_id) for r in created.results), body.get("numErrors")]

# Deal 1 with 1,234 contacts, read back by the SDK's own paging.
for start in (1, 1001):
    associations.batch.create_default(
        "contacts",
        from_object_type="deals",
        inputs=[{"from": {"id": "1"}, "to": {"id": str(c)}} for c in range(start, min(start + 1000, 1235))],
    )
page = associations.list("contacts", object_type="deals", object_id="1", limit=500)
ids = []
pages = 0
for current in page.iter_pages():
    pages += 1
    ids.extend(int(r.to_object_id) for r in current.results)
report["deal_contacts"] = ids
report["deal_pages"] = pages

# A batch read with a record that has none: 207, the errors inside.
raw = associations.batch.with_raw_response.get(
    "contacts", from_object_type="deals", inputs=[{"id": "1"}, {"id": "999"}]
)
read = raw.parse()
report["batch_read"] = [raw.status_code, [int(r.from_.id) for r in read.results], raw.http_response.json().get("numErrors")]

# Record writes: a labelled PUT, a default PUT, a DELETE.
labelled = associations.update_labels(
    "9", object_type="contacts", object_id="2", to_object_type="companies", body=[spec]
)
report["labelled"] = sorted(labelled.labels)
default = associations.create("10", from_object_type="contacts", from_object_id="2", to_object_type="companies")
report["default"] = sorted((d.from_.id, d.to.id) for d in default.results)
associations.delete("10", object_type="contacts", object_id="2", to_object_type="companies")

# Archives answer 200 with a body under 2026-03; the SDK takes them.
associations.batch.delete_labels(
    "companies",
    from_object_type="contacts",
    inputs=[{"from": {"id": "1"}, "to": {"id": "3"}, "types": [spec]}],
)
associations.batch.delete(
    "companies", from_object_type="contacts", inputs=[{"from": {"id": "1"}, "to": [{"id": "2"}]}]
)
left = associations.list("companies", object_type="contacts", object_id="1")
report["contact_1_companies"] = sorted(
    (int(r.to_object_id), sorted(t.type_id for t in r.association_types)) for r in left
)

# The high-usage report, then the limit purged and the label deleted.
created = associations.request_high_usage_report(42)
report["report"] = [created.user_id, created.user_email]
schema.limits.batch_delete(
    "companies", from_object_type="contacts", inputs=[{"category": "USER_DEFINED", "type_id": partner}]
)
report["limits_after_purge"] = len(schema.limits.list().results)
schema.labels.delete_label(partner, from_object_type="contacts", to_object_type="companies")
report["labels_after_delete"] = sorted(
    t.label or "" for t in schema.labels.list_labels("companies", from_object_type="contacts").results
)

print(json.dumps(report))
