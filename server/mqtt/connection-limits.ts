/**
 * How many MQTT connections the embedded broker holds: in total, per source address, and per
 * source address before they authenticate. A connection over a limit is closed before the
 * broker reads a byte of it. Many devices behind one NAT may share an address, so the
 * per-address limit is generous and the tight one is on connections that have not yet proved
 * who they are.
 */
export interface ConnectionLimits {
  maxConnections: number;
  maxConnectionsPerAddress: number;
  maxUnauthenticatedPerAddress: number;
  /** Connections that have not authenticated yet, from all addresses (each may hold a partial packet). */
  maxUnauthenticated: number;
}

export type AdmitRefusal = "too-many-connections" | "too-many-unauthenticated" | "too-many-from-address" | "too-many-unauthenticated-from-address";

export interface Admission {
  /** Call once the connection has authenticated. */
  authenticated(): void;
  /** Call once when the connection closes. */
  release(): void;
}

export class ConnectionLimiter {
  private total = 0;
  private unauthenticated = 0;
  private readonly perAddress = new Map<string, { all: number; unauthenticated: number }>();

  constructor(private readonly limits: ConnectionLimits) {}

  /** An admission for a new connection from `address`, or the limit it would break. */
  admit(address: string): Admission | AdmitRefusal {
    const counts = this.perAddress.get(address) ?? { all: 0, unauthenticated: 0 };
    if (this.total >= this.limits.maxConnections) return "too-many-connections";
    if (this.unauthenticated >= this.limits.maxUnauthenticated) return "too-many-unauthenticated";
    if (counts.all >= this.limits.maxConnectionsPerAddress) return "too-many-from-address";
    if (counts.unauthenticated >= this.limits.maxUnauthenticatedPerAddress) return "too-many-unauthenticated-from-address";
    this.total++;
    this.unauthenticated++;
    counts.all++;
    counts.unauthenticated++;
    this.perAddress.set(address, counts);
    let authenticated = false;
    let released = false;
    return {
      authenticated: () => {
        if (authenticated || released) return;
        authenticated = true;
        counts.unauthenticated--;
        this.unauthenticated--;
      },
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        counts.all--;
        if (!authenticated) {
          counts.unauthenticated--;
          this.unauthenticated--;
        }
        if (counts.all === 0) this.perAddress.delete(address);
      },
    };
  }

  get connections(): number {
    return this.total;
  }
}
