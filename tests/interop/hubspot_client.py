"""Drives the REST gateway with HubSpot's official Python client.

Run by tests/hubspot_interop.rs with the gateway's URL and a bearer token
(the server runs with authentication on) as its arguments, and optionally a
HubSpot API date version (e.g. 2026-03): then every v4 call the client makes
goes to the date-versioned path instead (`/crm/associations/2026-03/…`,
`/crm/objects/2026-03/…`), which carries the same shapes.
Asserts what the client itself can check (status-specific models, error
bodies) and prints a JSON report of everything it read, which the Rust test
compares with gRPC reads of the same records.
"""
import json
import sys
import urllib.parse
import urllib.request

from hubspot import HubSpot
from hubspot.crm.associations.v4.exceptions import ApiException as V4ApiException
from hubspot.crm.associations.v4.schema.exceptions import UnauthorizedException

BASE, TOKEN = sys.argv[1], sys.argv[2]
VERSION = sys.argv[3] if len(sys.argv) > 3 else None
report = {}


def use_date_version(version):
    """Sends the client's v4 calls to HubSpot's date-versioned paths."""
    from hubspot.crm.associations.v4 import api_client as records_client
    from hubspot.crm.associations.v4.schema import api_client as schema_client

    prefixes = [
        ("/crm/v4/associations/", f"/crm/associations/{version}/"),
        ("/crm/associations/v4/", f"/crm/associations/{version}/"),
        ("/crm/v4/objects/", f"/crm/objects/{version}/"),
    ]
    report["versioned_paths"] = []
    for module in (records_client, schema_client):
        original = module.ApiClient.call_api

        def call_api(self, resource_path, *args, _original=original, **kwargs):
            for old, new in prefixes:
                if resource_path.startswith(old):
                    resource_path = new + resource_path[len(old):]
            check(
                resource_path.startswith(f"/crm/associations/{version}/")
                or resource_path.startswith(f"/crm/objects/{version}/"),
                f"a v4 call left unversioned: {resource_path}",
            )
            report["versioned_paths"].append(resource_path)
            return _original(self, resource_path, *args, **kwargs)

        module.ApiClient.call_api = call_api


if VERSION:
    use_date_version(VERSION)
client = HubSpot(access_token=TOKEN, host=BASE, base_url=BASE)
v4 = client.crm.associations.v4


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def get_json(url):
    # Links are relative unless the gateway has a public URL: resolved
    # against the gateway's address, as a browser or HTTP client does.
    url = urllib.parse.urljoin(BASE, url)
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(request) as response:
        check(response.status == 200, f"GET {url} answered {response.status}")
        return json.loads(response.read())


# A token the server does not know: the client sees HubSpot's 401 body.
stranger = HubSpot(access_token="not-a-known-token", host=BASE, base_url=BASE)
try:
    stranger.crm.associations.v4.schema.definitions_api.get_all("contacts", "companies")
    raise AssertionError("an unknown token was let in")
except UnauthorizedException as err:
    body = json.loads(err.body)
    report["unknown_token"] = [err.status, body["category"]]

# Labels: one symmetric (one text both ways), one paired.
partner = v4.schema.definitions_api.create(
    "contacts", "companies", {"label": "Partner", "name": "partner"}
)
check(partner is not None, "labels POST must answer 200 with a body")
check({r.label for r in partner.results} == {"Partner"}, f"symmetric label: {partner}")
partner_id = min(r.type_id for r in partner.results)
paired = v4.schema.definitions_api.create(
    "contacts",
    "companies",
    {"label": "Billing contact", "name": "billing_contact", "inverseLabel": "Billed company"},
)
check(
    sorted(r.label for r in paired.results) == ["Billed company", "Billing contact"],
    f"paired label: {paired}",
)
billing_id = next(r.type_id for r in paired.results if r.label == "Billing contact")
labels = v4.schema.definitions_api.get_all("contacts", "companies")
report["labels"] = sorted(r.label or "" for r in labels.results)

# Limits: at most 2 partner companies per contact.
created_limits = v4.schema.definition_configurations_api.batch_create(
    "contacts",
    "companies",
    {"inputs": [{"category": "USER_DEFINED", "typeId": partner_id, "maxToObjectIds": 2}]},
)
check(created_limits is not None, "limit batch/create must answer 201")
check(created_limits.results[0].user_enforced_max_to_object_ids == 2, str(created_limits))
updated = v4.schema.definition_configurations_api.batch_update(
    "contacts",
    "companies",
    {"inputs": [{"category": "USER_DEFINED", "typeId": partner_id, "maxToObjectIds": 3}]},
)
check(updated is not None and updated.results[0].user_enforced_max_to_object_ids == 3, str(updated))

# A batch where two of five items exceed the limit: a 207 through the client.
partners = v4.batch_api.create(
    "contacts",
    "companies",
    {
        "inputs": [
            {
                "from": {"id": "1"},
                "to": {"id": str(company)},
                "types": [{"associationCategory": "USER_DEFINED", "associationTypeId": partner_id}],
            }
            for company in range(1, 6)
        ]
    },
)
check(partners is not None, "batch/create with errors must answer 207")
check(partners.num_errors == 2, f"two items exceed the limit: {partners}")
check(
    all(e.sub_category == "crm.associations.ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED" for e in partners.errors),
    str(partners.errors),
)
report["partner_companies"] = sorted(int(r.to_object_id) for r in partners.results)
report["partner_error_messages"] = sorted(e.message for e in partners.errors)

# A single labelled PUT past the limit: HubSpot's single-write limit body.
try:
    v4.basic_api.create(
        "contacts", 1, "companies", 9,
        [{"associationCategory": "USER_DEFINED", "associationTypeId": partner_id}],
    )
    raise AssertionError("a fourth partner must be refused")
except V4ApiException as err:
    check(err.status == 400, f"limit PUT status {err.status}")
    body = json.loads(err.body)
    check(body["message"] == "One or more associations are invalid", str(body))
    check("ASSOCIATION_USER_CONFIG_LIMIT_EXCEEDED" in body["context"], str(body))
    check(body.get("correlationId"), "every error carries a correlationId")

# A labelled PUT within limits answers 201 with the pair's labels.
billing = v4.basic_api.create(
    "contacts", 2, "companies", 7,
    [{"associationCategory": "USER_DEFINED", "associationTypeId": billing_id}],
)
# A contact's first company also becomes its primary one.
check(billing is not None and billing.labels == ["Primary", "Billing contact"], str(billing))


def batch_create(from_type, to_type, pairs, type_id):
    for start in range(0, len(pairs), 2000):
        chunk = pairs[start : start + 2000]
        result = v4.batch_api.create(
            from_type,
            to_type,
            {
                "inputs": [
                    {
                        "from": {"id": str(a)},
                        "to": {"id": str(b)},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}],
                    }
                    for a, b in chunk
                ]
            },
        )
        # A 201 answer deserializes to the model without errors.
        check(type(result).__name__ == "BatchResponseLabelsBetweenObjectPair", f"seeding failed: {result}")
        check(len(result.results) == len(chunk), "every input created")


# Deal 1 with 1,234 contacts, paged through v4 get_page to the end.
batch_create("deals", "contacts", [(1, c) for c in range(1, 1235)], 3)
ids, after, pages = [], None, 0
while True:
    page = v4.basic_api.get_page("deals", 1, "contacts", after=after, limit=500)
    pages += 1
    ids.extend(int(r.to_object_id) for r in page.results)
    if page.paging is None or page.paging.next is None:
        break
    after = page.paging.next.after
report["v4_page_ids"] = ids
report["v4_pages"] = pages

# 50 deals (101..150), every third with 150 contacts, the rest with 20.
counts = {deal: 150 if deal % 3 == 0 else 20 for deal in range(101, 151)}
batch_create("deals", "contacts", [(d, c) for d, n in counts.items() for c in range(1, n + 1)], 3)

# v3 batch read, following each input's `after`.
by_after = {}
pending = [{"id": str(d)} for d in counts]
while pending:
    answer = client.crm.associations.batch_api.read("deals", "contacts", {"inputs": pending})
    check(answer is not None, "v3 batch/read must answer 200")
    pending = []
    for result in answer.results:
        by_after.setdefault(result._from.id, []).extend((t.id, t.type) for t in result.to)
        if result.paging and result.paging.next:
            pending.append({"id": result._from.id, "after": result.paging.next.after})
report["v3_after"] = by_after

# The same, following each result's `link` instead.
by_link = {}
first = client.crm.associations.batch_api.read(
    "deals", "contacts", {"inputs": [{"id": str(d)} for d in counts]}
)
for result in first.results:
    rows = by_link.setdefault(result._from.id, [])
    rows.extend((t.id, t.type) for t in result.to)
    link = result.paging.next.link if result.paging and result.paging.next else None
    while link:
        page = get_json(link)
        rows.extend((r["id"], r["type"]) for r in page["results"])
        link = page.get("paging", {}).get("next", {}).get("link")
report["v3_link"] = by_link

# An object with its associations, paged by the links inside it.
deal = client.crm.objects.basic_api.get_by_id("deals", "1", associations=["contacts"])
check(deal.id == "1" and deal.properties["hs_object_id"] == "1", str(deal.properties))
contacts = deal.associations["contacts"]
check(len(contacts.results) == 100, "v3 object associations page at 100")
object_ids = [r.id for r in contacts.results]
link = contacts.paging.next.link
while link:
    page = get_json(link)
    object_ids.extend(r["id"] for r in page["results"])
    link = page.get("paging", {}).get("next", {}).get("link")
report["object_ids"] = object_ids

# The object list pages over records that hold associations.
listed, after = [], None
while True:
    page = client.crm.objects.basic_api.get_page("deals", limit=20, after=after)
    listed.extend(int(o.id) for o in page.results)
    if page.paging is None or page.paging.next is None:
        break
    after = page.paging.next.after
report["listed_deals"] = listed

# Purge the limit, then delete both labels.
purged = v4.schema.definition_configurations_api.batch_remove(
    "contacts", "companies", {"inputs": [{"category": "USER_DEFINED", "typeId": partner_id}]}
)
check(purged is None, "purge answers 204")
report["limits_after_purge"] = len(v4.schema.definition_configurations_api.get_all().results)
v4.schema.definitions_api.remove("contacts", "companies", partner_id)
v4.schema.definitions_api.remove("contacts", "companies", billing_id)
after_delete = v4.schema.definitions_api.get_all("contacts", "companies")
report["labels_after_delete"] = sorted(r.label or "" for r in after_delete.results)

print(json.dumps(report))
