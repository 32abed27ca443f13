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
    /** Connections that have not authenticated yet, in total: each may hold up to a packet before CONNECT completes. */
    mqttMaxUnauthenticated: positive,
    /** How long a dashboard sign-in lasts; `POST /api/v1/sessions/revoke` ends all sooner. */
    dashboardSessionHours: positive,
    /** Devices waiting for enrollment; beyond it an unknown id is refused and nothing is stored. */
    maxPendingDevices: positive,
    /** Devices in the registry, whatever their enrollment: new ids are refused beyond it (with --auto-accept, the bound on strangers). */
    maxDevices: positive,
    /** Connections and messages (reports, online flags, hellos) one device may send in a burst... */
    deviceMessageBurst: positive,
    /** ...and per minute after it: the rate its budget refills at. */
    deviceMessagesPerMinute: positive,
    /** History kept per device: its newest events up to this number... */
    historyMaxEventsPerDevice: positive,
    /** ...and none older than this. */
    historyMaxAgeDays: positive,
  })
  .strict();

export type ServerLimits = z.infer<typeof LimitsSchema>;

export const DEFAULT_LIMITS: ServerLimits = {
  mqttMaxPacketBytes: 64 * 1024,
  mqttConnectTimeoutSeconds: 10,
  mqttMaxConnections: 50_000,
  mqttMaxConnectionsPerAddress: 20_000,
  mqttMaxUnauthenticatedPerAddress: 128,
  mqttMaxUnauthenticated: 2048,
  dashboardSessionHours: 12,
  maxPendingDevices: 1000,
  maxDevices: 100_000,
  deviceMessageBurst: 60,
  deviceMessagesPerMinute: 120,
  historyMaxEventsPerDevice: 1000,
  historyMaxAgeDays: 90,
};
