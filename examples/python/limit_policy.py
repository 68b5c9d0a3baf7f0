"""A sample admin plugin in Python, the same as examples/limit_policy.rs: it
serves associations.v1.AdminHookService (proto/associations/v1/hooks.proto)
on stubs generated from the proto with grpcio-tools, refuses any
association limit above --max-limit, and prints each committed admin change
it is told of once (de-duplicated on the idempotency key, as plugins
should).

    scripts/generate-clients python    # the stubs, into examples/python/gen
    python3 examples/python/limit_policy.py --addr 127.0.0.1:9000 --max-limit 100

Needs grpcio (pip install grpcio-tools, which brings it); register it in the
service's config file as the README's "Admin plugins" section shows.
"""

import argparse
import os
import sys
import threading
from concurrent import futures

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gen"))

import grpc  # noqa: E402

from associations.v1 import associations_pb2, hooks_pb2, hooks_pb2_grpc  # noqa: E402


class LimitPolicy(hooks_pb2_grpc.AdminHookServiceServicer):
    """Refuses association limits above a maximum; prints committed changes."""

    def __init__(self, max_limit):
        self.max_limit = max_limit
        self.seen = set()
        self.lock = threading.Lock()

    def ValidateChange(self, request, context):
        for limit in request.change.after.limits:
            if limit.max_to_object_ids > self.max_limit:
                return hooks_pb2.ValidateChangeResponse(
                    allow=False,
                    message=f"{limit.max_to_object_ids} exceeds this portal's maximum "
                    f"of {self.max_limit} (type {limit.type_id})",
                )
        return hooks_pb2.ValidateChangeResponse(allow=True)

    def ChangeCommitted(self, request, context):
        with self.lock:
            first_time = request.idempotency_key not in self.seen
            self.seen.add(request.idempotency_key)
        if first_time:
            change = request.change
            try:
                event = associations_pb2.AdminEvent.Name(change.event)
            except ValueError:
                event = "unknown event"
            print(
                f"committed {request.idempotency_key} {event} by {change.actor} "
                f"on {change.from_object_type_id} -> {change.to_object_type_id}",
                flush=True,
            )
        return hooks_pb2.ChangeCommittedResponse()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--addr",
        default="127.0.0.1:9000",
        help="where to serve (port 0 picks a free one; the line "
        "'limit-policy listening on ADDR' says which)",
    )
    parser.add_argument(
        "--max-limit", type=int, default=100, help="the highest limit an admin may set"
    )
    options = parser.parse_args()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    hooks_pb2_grpc.add_AdminHookServiceServicer_to_server(
        LimitPolicy(options.max_limit), server
    )
    host, _, _ = options.addr.rpartition(":")
    port = server.add_insecure_port(options.addr)
    if port == 0:
        sys.exit(f"limit-policy: cannot listen on {options.addr}")
    server.start()
    print(f"limit-policy listening on {host}:{port}", flush=True)
    try:
        server.wait_for_termination()
    except KeyboardInterrupt:
        server.stop(grace=1)


if __name__ == "__main__":
    main()
