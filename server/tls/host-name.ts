/** The names a server certificate may carry (RFC 6125): DNS names (a leading '*.' allowed) and IP addresses. */
import { isIP } from "node:net";

const DNS_NAME = /^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}))*\.?$/;

/** The name as a certificate carries it (DNS names lower-cased, without a trailing dot), or null when it is neither a DNS name nor an IP. */
export function normalizeHostName(name: string): string | null {
  if (isIP(name)) return name;
  if (name.length <= 253 && DNS_NAME.test(name)) return name.replace(/\.$/, "").toLowerCase();
  return null;
}
