// HubSpot's Node client (@hubspot/api-client) against the gateway, with its
// own retries on (numberOfApiCallRetries): reads a pair's label definitions
// twice in a row on a portal allowed one call a second, so the second read
// meets a 429 and succeeds only if the client recognises HubSpot's
// rate-limit body and retries. Prints what it read as one JSON line; the
// client's retry notice goes to stderr.
const hubspot = require('@hubspot/api-client');

const [basePath, accessToken] = process.argv.slice(2);
const client = new hubspot.Client({ accessToken, basePath, numberOfApiCallRetries: 3 });

(async () => {
  const reads = [];
  for (let i = 0; i < 2; i++) {
    const page = await client.crm.associations.v4.schema.definitionsApi.getAll('contacts', 'companies');
    reads.push(page.results.length);
  }
  console.log(JSON.stringify({ reads }));
})().catch((err) => {
  console.error(err);
  process.exit(1);
});
