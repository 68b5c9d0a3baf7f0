"""A gRPC client of association-service in Python, on stubs generated from
proto/ with grpcio-tools: it associates a contact with two companies, then
streams the contact's associations back and prints them.

    scripts/generate-clients python    # the stubs, into examples/python/gen
    python3 examples/python/client.py --server 127.0.0.1:50051 [--portal 1] [--token TOKEN]

The token (also from ASSOC_TOKEN) is needed when the service has
authentication on; `cargo run -- serve` runs open.
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402

from associations.v1 import associations_pb2 as pb  # noqa: E402
from associations.v1 import associations_pb2_grpc as rpc  # noqa: E402

CONTACT = 1001
COMPANIES = [2001, 2002]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default="127.0.0.1:50051", help="the gRPC address, host:port")
    parser.add_argument("--portal", type=int, default=1)
    parser.add_argument("--token", default=os.environ.get("ASSOC_TOKEN"))
    options = parser.parse_args()
    metadata = [("authorization", f"Bearer {options.token}")] if options.token else []
    with grpc.insecure_channel(options.server) as channel:
        writer = rpc.AssociationWriteStub(channel)
        reader = rpc.AssociationReadStub(channel)
        created = writer.CreateAssociations(
            pb.CreateAssociationsRequest(
                portal_id=options.portal,
                from_object_type="contacts",
                to_object_type="companies",
                inputs=[pb.AssociationInput(from_id=CONTACT, to_id=c) for c in COMPANIES],
            ),
            metadata=metadata,
        )
        for error in created.errors:
            print(f"input {error.index} refused: {error.message}")
        print(f"created {len(created.results)} associations of contact {CONTACT}")
        stream = reader.ListAssociations(
            pb.ListAssociationsRequest(
                portal_id=options.portal,
                object_type="contacts",
                object_id=CONTACT,
                to_object_type="companies",
            ),
            metadata=metadata,
        )
        for chunk in stream:
            for record in chunk.results:
                types = ", ".join(
                    f"{pb.AssociationCategory.Name(t.category)} {t.type_id}"
                    + (f" ({t.label})" if t.HasField("label") else "")
                    for t in record.types
                )
                print(f"contact {CONTACT} -> {record.to_object_type_id} {record.to_object_id}: {types}")


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        sys.exit(f"client: {error.code().name}: {error.details()}")
