// Shared by the bench's Node scripts: a gRPC client of the official Camunda 8 Node SDK
// (@camunda8/sdk), plaintext, no auth, quiet.
import { Camunda8 } from '@camunda8/sdk';

export function zeebeClient(address) {
  const c8 = new Camunda8({
    ZEEBE_GRPC_ADDRESS: `grpc://${address}`,
    CAMUNDA_AUTH_STRATEGY: 'NONE',
    ZEEBE_CLIENT_LOG_LEVEL: 'ERROR',
    CAMUNDA_LOG_LEVEL: 'error',
  });
  return c8.getZeebeGrpcApiClient();
}

/** --name value pairs from argv. */
export function args(argv = process.argv.slice(2)) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--') || i + 1 >= argv.length) throw new Error(`bad argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  return out;
}
