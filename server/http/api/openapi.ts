/**
 * The OpenAPI description of /api/v1, built from the operations table below: path parameters
 * come from the `{name}` in each path (so none can be missing), and each request body's schema
 * is generated from the zod schema its handler checks the body against.
 */
import { z } from "zod";
import { GroupsBodySchema, PreauthorizeSchema, RekeySchema, TagsSchema } from "./devices.ts";
import { CreateRolloutSchema } from "./rollouts.ts";
import { EnrollBodySchema } from "./enroll.ts";

type Method = "get" | "post" | "delete";

interface Operation {
  summary: string;
  /** The zod schema the handler parses the JSON body with. */
  body?: z.ZodType;
  /** Status code -> description, or a description and a response schema. */
  responses: Record<string, string | { description: string; schema: object }>;
  /** Needs no bearer token. */
  public?: true;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const object = (properties: Record<string, object>) => ({ type: "object", properties });
const UNAUTHORIZED = "Missing or wrong bearer token";

const COMPONENTS = {
    securitySchemes: { admin: { type: "http", scheme: "bearer", description: "APT_OSTREE_ADMIN_TOKEN" } },
    schemas: {
      Error: {
        type: "object",
        required: ["error"],
        properties: { error: { type: "object", required: ["code", "message"], properties: { code: { type: "string" }, message: { type: "string" } } } },
      },
      Deployment: { type: ["object", "null"], required: ["commit", "version"], properties: { commit: { type: "string", pattern: "^[0-9a-f]{64}$" }, version: { type: "string" } } },
      Device: {
        type: "object",
        required: ["id", "publicKey", "enrollment", "groups", "reportedGroups", "tags", "online"],
        properties: {
          id: { type: "string" },
          publicKey: { type: "string", description: "base64 ed25519 public key the device enrolled with" },
          enrollment: { enum: ["pending", "preauthorized", "accepted", "rejected", "revoked"] },
          groups: { type: "array", items: { type: "string" }, description: "As the operator assigns them: what rollouts select with group=" },
          reportedGroups: { type: "array", items: { type: "string" }, description: "As the device reports them (its agent config); shown only, never selected on" },
          tags: { type: "array", items: { type: "string" }, description: "As the operator sets them" },
          architecture: { type: ["string", "null"] },
          state: { type: ["string", "null"], enum: ["idle", "downloading", "staged", "rebooting", "verifying", "healthy", "rolled-back", "failed", null] },
          booted: { $ref: "#/components/schemas/Deployment" },
          staged: { $ref: "#/components/schemas/Deployment" },
          pending: { $ref: "#/components/schemas/Deployment", description: "What the next boot starts, when it is not the booted deployment" },
          rollback: { $ref: "#/components/schemas/Deployment" },
          agentVersion: { type: ["string", "null"] },
          online: { type: "boolean" },
          lastSeen: { type: ["string", "null"], format: "date-time" },
          lastCounter: { type: ["integer", "null"] },
          enrolledAt: { type: "string", format: "date-time" },
        },
      },
      Release: {
        type: "object",
        required: ["ref", "channel", "version", "sequence", "commit", "architecture", "issued", "expires", "manifest", "deltas", "previousVersion", "packageDiff"],
        properties: {
          ref: { type: "string" },
          channel: { type: "string" },
          version: { type: "string" },
          sequence: { type: "integer" },
          commit: { type: "string", pattern: "^[0-9a-f]{64}$" },
          architecture: { type: "string" },
          issued: { type: "string", format: "date-time" },
          expires: { type: "string", format: "date-time" },
          manifest: { type: "string", description: "Path of the signed manifest under /repo/" },
          deltas: {
            type: "array",
            items: { type: "object", properties: { from: { type: ["string", "null"] }, fromVersion: { type: ["string", "null"] }, size: { type: "integer" } } },
          },
          previousVersion: { type: ["string", "null"], description: "The version this commit was composed after (its parent)" },
          packageDiff: {
            type: ["object", "null"],
            description: "Packages changed since the parent, as `apt-ostree-server db diff` prints them",
            properties: {
              upgraded: { type: "array", items: { $ref: "#/components/schemas/VersionChange" } },
              downgraded: { type: "array", items: { $ref: "#/components/schemas/VersionChange" } },
              removed: { type: "array", items: { $ref: "#/components/schemas/Package" } },
              added: { type: "array", items: { $ref: "#/components/schemas/Package" } },
            },
          },
        },
      },
      VersionChange: {
        type: "object",
        properties: { name: { type: "string" }, architecture: { type: "string" }, from: { type: "string" }, to: { type: "string" } },
      },
      Package: {
        type: "object",
        properties: { name: { type: "string" }, version: { type: "string" }, architecture: { type: "string" } },
      },
    },
  };

const OPERATIONS: Record<string, Partial<Record<Method, Operation>>> = {
  "/api/v1/releases": {
    get: { summary: "What each channel currently publishes, per ref", responses: { "200": { description: "Releases", schema: object({ releases: { type: "array", items: ref("Release") } }) }, "401": UNAUTHORIZED } },
  },
  "/api/v1/fleet": { get: { summary: "Devices per version, state and enrollment; outcomes per rollout", responses: { "200": "Fleet summary", "401": UNAUTHORIZED } } },
  "/api/v1/devices": {
    get: { summary: "Every device the server knows, pending ones included", responses: { "200": { description: "{devices}", schema: object({ devices: { type: "array", items: ref("Device") } }) }, "401": UNAUTHORIZED } },
    post: {
      summary: "Preauthorize a device: accepted at its first connection if it presents exactly this key (another key is refused), in these operator-assigned groups",
      body: PreauthorizeSchema,
      responses: { "201": { description: "{device}", schema: object({ device: ref("Device") }) }, "400": "Bad body, with the reason", "409": "The device is already accepted, rejected or revoked, or the key was revoked" },
    },
  },
  "/api/v1/devices/{id}": {
    get: { summary: "One device and its last 100 events (reports, online changes, enrollment)", responses: { "200": "{device, events}", "404": "No such device" } },
    delete: {
      summary: "Forget a device: its record, history, rollout memberships and retained MQTT messages; its connection is ended. If it connects again it enrolls as pending.",
      responses: { "200": { description: "{device}: the record as it was", schema: object({ device: ref("Device") }) }, "404": "No such device" },
    },
  },
  "/api/v1/devices/{id}/reject": {
    post: {
      summary: "Reject a device: kept with its key as rejected, its connection ended, refused from now on (accept undoes it)",
      responses: { "200": { description: "{device}", schema: object({ device: ref("Device") }) }, "404": "No such device" },
    },
  },
  "/api/v1/devices/{id}/accept": { post: { summary: "Accept a pending, preauthorized or rejected device: it may connect from now on", responses: { "200": "{device}", "404": "The device never connected", "409": "The device is revoked (rekey it)" } } },
  "/api/v1/devices/{id}/revoke": {
    post: {
      summary: "Revoke a device: kept as revoked, its connection ended, refused from now on, its key refused under any id; accept cannot undo it, rekey can",
      responses: { "200": { description: "{device}", schema: object({ device: ref("Device") }) }, "404": "No such device" },
    },
  },
  "/api/v1/devices/{id}/rekey": {
    post: {
      summary: "Give a device a new key (its storage was replaced): the old key is refused from now on, its connection ended, its report counter reset; a revoked or rejected device is accepted with it",
      body: RekeySchema,
      responses: { "200": { description: "{device}", schema: object({ device: ref("Device") }) }, "400": "Bad key", "404": "No such device", "409": "Pending device, same key, or a revoked key" },
    },
  },
  "/api/v1/devices/{id}/groups": {
    post: { summary: "Replace a device's groups (what rollout selectors group= match; the device's own claims are only reportedGroups)", body: GroupsBodySchema, responses: { "200": "{device}", "400": "Bad groups, with the reason", "404": "No such device" } },
  },
  "/api/v1/devices/{id}/tags": {
    post: { summary: "Replace a device's tags (what rollout selectors tag= match)", body: TagsSchema, responses: { "200": "{device}", "400": "Bad tags, with the reason", "404": "No such device" } },
  },
  "/api/v1/rollouts": {
    get: { summary: "Every rollout with per-wave progress", responses: { "200": "{rollouts}" } },
    post: {
      summary: "Start a rollout of what a channel publishes for a ref",
      body: CreateRolloutSchema,
      responses: { "201": "{rollout}", "400": "Bad request, with the reason", "404": "The channel publishes nothing for the ref", "409": "Version not published, devices busy, or no signing key", "413": "Body above 64 KiB" },
    },
  },
  "/api/v1/rollouts/{id}": { get: { summary: "One rollout: waves, devices, pause reason", responses: { "200": "{rollout}", "404": "No such rollout" } } },
  "/api/v1/rollouts/{id}/pause": { post: { summary: "Pause a running rollout; devices that have not started are told to wait", responses: { "200": "{rollout}", "404": "No such rollout", "409": "Not running" } } },
  "/api/v1/rollouts/{id}/resume": { post: { summary: "Resume a paused rollout", responses: { "200": "{rollout}", "404": "No such rollout", "409": "Not paused" } } },
  "/api/v1/rollouts/{id}/abort": { post: { summary: "Abort a rollout for good; its update is withdrawn from devices that have not finished", responses: { "200": "{rollout}", "404": "No such rollout", "409": "Already finished" } } },
  "/api/v1/sessions/revoke": { post: { summary: "End every dashboard session (sign-ins made before now stop working)", responses: { "200": "{revoked: true}", "401": UNAUTHORIZED } } },
  "/api/v1/events": { get: { summary: "Fleet changes as server-sent events (`event: change`, data `{kind, id}`)", responses: { "200": "text/event-stream" } } },
  "/api/v1/openapi.json": { get: { summary: "This document", public: true, responses: { "200": "OpenAPI 3.1" } } },
  "/api/v1/enroll": {
    post: {
      summary: "A device enrolls with its signed token (no bearer token: the token's signature authenticates it, the same rules as an MQTT CONNECT or hello) and, once accepted, gets its broker client certificate: CN its id, its own ed25519 key, signed by the server's CA, valid 7 days (docs/mosquitto/)",
      public: true,
      body: EnrollBodySchema,
      responses: {
        "200": { description: "Accepted: the certificate", schema: object({ deviceId: { type: "string" }, enrollment: { const: "accepted" }, certificate: { type: "string", description: "PEM" }, notAfter: { type: "string", format: "date-time" } }) },
        "202": { description: "Pending: ask again once the operator accepted it", schema: object({ deviceId: { type: "string" }, enrollment: { const: "pending" }, message: { type: "string" } }) },
        "400": "Bad body, with the reason",
        "401": "The token is malformed, badly signed or expired",
        "403": "Refused: revoked, rejected, a revoked key, or another key than the one on record",
        "503": "Too many devices wait for enrollment, or the server has no CA to issue certificates with",
      },
    },
  },
};

/** A JSON Schema (2020-12, OpenAPI 3.1's dialect) of what a body may be, from its zod schema. */
function bodySchema(schema: z.ZodType): object {
  const { $schema: _dialect, ...json } = z.toJSONSchema(schema, { io: "input" }) as Record<string, unknown>;
  return json;
}

function describeOperation(path: string, operation: Operation): object {
  const parameters = [...path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1]!, in: "path", required: true, schema: { type: "string" } }));
  const responses = Object.fromEntries(
    Object.entries(operation.responses).map(([code, response]) => [
      code,
      typeof response === "string" ? { description: response } : { description: response.description, content: { "application/json": { schema: response.schema } } },
    ]),
  );
  return {
    summary: operation.summary,
    ...(parameters.length > 0 ? { parameters } : {}),
    ...(operation.body ? { requestBody: { required: true, content: { "application/json": { schema: bodySchema(operation.body) } } } } : {}),
    ...(operation.public ? { security: [] } : {}),
    responses,
  };
}

export function buildOpenApi(): Record<string, unknown> {
  const paths = Object.fromEntries(
    Object.entries(OPERATIONS).map(([path, methods]) => [path, Object.fromEntries(Object.entries(methods).map(([method, operation]) => [method, describeOperation(path, operation!)]))]),
  );
  return {
    openapi: "3.1.0",
    info: { title: "apt-ostree server API", version: "1" },
    components: COMPONENTS,
    security: [{ admin: [] }],
    paths,
  };
}

export const OPENAPI = buildOpenApi();
