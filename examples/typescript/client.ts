// A gRPC client of association-service in TypeScript, on stubs generated
// from proto/ with `buf generate` (protoc-gen-es, buf.gen.yaml here) and
// called over @connectrpc/connect-node's gRPC transport: it associates a
// contact with two companies, then streams the contact's associations back
// and prints them.
//
//   npm ci --prefix examples/typescript
//   scripts/generate-clients typescript    # the stubs, into examples/typescript/gen
//   npm run --prefix examples/typescript build
//   node examples/typescript/dist/client.js --server 127.0.0.1:50051 [--portal 1] [--token TOKEN]
//
// The token (also from ASSOC_TOKEN) is needed when the service has
// authentication on; `cargo run -- serve` runs open.
import { parseArgs } from "node:util";

import { create } from "@bufbuild/protobuf";
import { ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";

import {
  AssociationCategory,
  AssociationInputSchema,
  AssociationRead,
  AssociationWrite,
} from "./gen/associations/v1/associations_pb.js";

const CONTACT = 1001n;
const COMPANIES = [2001n, 2002n];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      server: { type: "string", default: "127.0.0.1:50051" },
      portal: { type: "string", default: "1" },
      token: { type: "string", default: process.env.ASSOC_TOKEN },
    },
  });
  const transport = createGrpcTransport({ baseUrl: `http://${values.server}` });
  const headers: Record<string, string> = values.token
    ? { authorization: `Bearer ${values.token}` }
    : {};
  const portalId = BigInt(values.portal ?? "1");
  const writer = createClient(AssociationWrite, transport);
  const reader = createClient(AssociationRead, transport);

  const created = await writer.createAssociations(
    {
      portalId,
      fromObjectType: "contacts",
      toObjectType: "companies",
      inputs: COMPANIES.map((toId) => create(AssociationInputSchema, { fromId: CONTACT, toId })),
    },
    { headers },
  );
  for (const error of created.errors) {
    console.log(`input ${error.index} refused: ${error.message}`);
  }
  console.log(`created ${created.results.length} associations of contact ${CONTACT}`);

  const stream = reader.listAssociations(
    { portalId, objectType: "contacts", objectId: CONTACT, toObjectType: "companies" },
    { headers },
  );
  for await (const chunk of stream) {
    for (const record of chunk.results) {
      const types = record.types
        .map(
          (t) =>
            `${AssociationCategory[t.category]} ${t.typeId}` +
            (t.label !== undefined ? ` (${t.label})` : ""),
        )
        .join(", ");
      console.log(`contact ${CONTACT} -> ${record.toObjectTypeId} ${record.toObjectId}: ${types}`);
    }
  }
}

main().catch((error: unknown) => {
  const text = error instanceof ConnectError ? `${error.code}: ${error.rawMessage}` : String(error);
  console.error(`client: ${text}`);
  process.exit(1);
});
