/**
 * What went wrong with a TLS connection, in words an operator can act on: OpenSSL's verification
 * codes and Node's TLS errors mapped once (the agent's HTTP and MQTT clients and the server CLI
 * share them). Pure: no node:tls here, so the idle agent does not load it.
 */
import { AptOstreeError } from "../errors.ts";

/** A TLS connection refused by this side or the other: the message names the cause and the fix. */
export class TlsError extends AptOstreeError {
  constructor(message: string, cause?: unknown) {
    super("E_TLS", message, { cause });
  }
}

const NOT_OUR_CA = new Set([
  "SELF_SIGNED_CERT_IN_CHAIN",
  "DEPTH_ZERO_SELF_SIGNED_CERT",
  "UNABLE_TO_VERIFY_LEAF_SIGNATURE",
  "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
  "UNABLE_TO_GET_ISSUER_CERT",
  "CERT_SIGNATURE_FAILURE",
  "CERT_UNTRUSTED",
]);

/**
 * Words for `error` when it is a TLS failure, else null. `trust` names what the peer's
 * certificate was checked against (e.g. "the CA in /etc/apt-ostree/ca.pem").
 */
export function describeTlsFailure(error: unknown, trust: string): string | null {
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  if (typeof code !== "string") return null;
  if (NOT_OUR_CA.has(code)) return `the server's certificate is not signed by ${trust} (${code}); the server uses another CA, or this is not the CA it uses`;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return `the server's certificate does not name the host in the URL (${message}); use a name it carries, or reissue it with 'tls init --host NAME'`;
  if (code === "CERT_HAS_EXPIRED") return "the server's certificate has expired (CERT_HAS_EXPIRED); reissue it, or check this machine's clock";
  if (code === "CERT_NOT_YET_VALID") return "the server's certificate is not valid yet (CERT_NOT_YET_VALID); check this machine's clock";
  if (code === "ERR_SSL_WRONG_VERSION_NUMBER" || code === "ERR_SSL_PACKET_LENGTH_TOO_LONG" || /wrong version number|packet length too long/i.test(message)) {
    return `the server does not speak TLS on this port (${code}): it serves plain text (--insecure-plain), so use http:// or mqtt://, or serve TLS`;
  }
  if (code.startsWith("ERR_SSL_") || code === "EPROTO" || code.startsWith("ERR_TLS_")) return `TLS failed (${code}): ${message}`;
  return null;
}

/** `error` as a TlsError naming `url` when it is a TLS failure; as it was otherwise. */
export function explainTlsFailure(error: unknown, url: string, trust: string): unknown {
  const words = describeTlsFailure(error, trust);
  return words === null ? error : new TlsError(`TLS to ${url}: ${words}`, error);
}
