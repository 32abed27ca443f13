/**
 * What the server accepts from devices and strangers before it does any work for them. Every
 * limit has a default fit for one server and can be set in the config file's `limits:` section
 * (docs/server.md lists them).
 */
import { z } from "zod";

const positive = z.number().int().positive();

export const LimitsSchema = z
  .object({
    /** Largest MQTT packet a client may send, fixed header included. */
    mqttMaxPacketBytes: positive.min(1024),
    /** Time a new connection has to complete CONNECT. */
    mqttConnectTimeoutSeconds: positive,
    mqttMaxConnections: positive,
    mqttMaxConnectionsPerAddress: positive,
    /** Connections from one address that have not authenticated yet. */
    mqttMaxUnauthenticatedPerAddress: positive,
    /** How long a dashboard sign-in lasts; `POST /api/v1/sessions/revoke` ends all sooner. */
    dashboardSessionHours: positive,
  })
  .strict();

export type ServerLimits = z.infer<typeof LimitsSchema>;

export const DEFAULT_LIMITS: ServerLimits = {
  mqttMaxPacketBytes: 64 * 1024,
  mqttConnectTimeoutSeconds: 10,
  mqttMaxConnections: 50_000,
  mqttMaxConnectionsPerAddress: 20_000,
  mqttMaxUnauthenticatedPerAddress: 128,
  dashboardSessionHours: 12,
};
