/** The OpenAPI description of /api/v1: what exists now, grown with each resource. */
export const OPENAPI = {
  openapi: "3.1.0",
  info: { title: "apt-ostree server API", version: "1" },
  components: {
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
        required: ["id", "publicKey", "enrollment", "groups", "tags", "online"],
        properties: {
          id: { type: "string" },
          publicKey: { type: "string", description: "base64 ed25519 public key the device enrolled with" },
          enrollment: { enum: ["pending", "accepted", "rejected"] },
          groups: { type: "array", items: { type: "string" }, description: "As the device reports them" },
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
  },
  security: [{ admin: [] }],
  paths: {
    "/api/v1/releases": {
      get: {
        summary: "What each channel currently publishes, per ref",
        responses: {
          "200": { description: "Releases", content: { "application/json": { schema: { type: "object", properties: { releases: { type: "array", items: { $ref: "#/components/schemas/Release" } } } } } } },
          "401": { description: "Missing or wrong bearer token", content: { "application/json": { schema: { $ref: "#/components/schemas/Error" } } } },
        },
      },
    },
    "/api/v1/fleet": { get: { summary: "Devices per version, state and enrollment; outcomes per rollout", responses: { "200": { description: "Fleet summary" }, "401": { description: "Missing or wrong bearer token" } } } },
    "/api/v1/devices": { get: { summary: "Every device the server knows, pending ones included", responses: { "200": { description: "{devices}", content: { "application/json": { schema: { type: "object", properties: { devices: { type: "array", items: { $ref: "#/components/schemas/Device" } } } } } } }, "401": { description: "Missing or wrong bearer token" } } } },
    "/api/v1/devices/{id}": {
      get: { summary: "One device and its last 100 events (reports, online changes, enrollment)", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": { description: "{device, events}" }, "404": { description: "No such device" } } },
      delete: {
        summary: "Forget a device: its record, history, rollout memberships and retained MQTT messages; its connection is ended. If it connects again it enrolls as pending.",
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
        responses: { "200": { description: "{device}: the record as it was", content: { "application/json": { schema: { type: "object", properties: { device: { $ref: "#/components/schemas/Device" } } } } } }, "404": { description: "No such device" } },
      },
    },
    "/api/v1/devices/{id}/reject": {
      post: {
        summary: "Reject a device: kept with its key as rejected, its connection ended, refused from now on (accept undoes it)",
        parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }],
        responses: { "200": { description: "{device}", content: { "application/json": { schema: { type: "object", properties: { device: { $ref: "#/components/schemas/Device" } } } } } }, "404": { description: "No such device" } },
      },
    },
    "/api/v1/devices/{id}/accept": {
      post: { summary: "Accept a pending device: it may connect from now on", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": { description: "{device}" }, "404": { description: "The device never connected" } } },
    },
    "/api/v1/devices/{id}/tags": {
      post: {
        summary: "Replace a device's tags (what rollout selectors tag= match)",
        requestBody: { required: true, content: { "application/json": { schema: { type: "object", required: ["tags"], properties: { tags: { type: "array", items: { type: "string" }, maxItems: 32 } } } } } },
        responses: { "200": { description: "{device}" }, "400": { description: "Bad tags, with the reason" }, "404": { description: "No such device" } },
      },
    },
    "/api/v1/rollouts": {
      get: { summary: "Every rollout with per-wave progress", responses: { "200": { description: "{rollouts}" } } },
      post: {
        summary: "Start a rollout of what a channel publishes for a ref",
        requestBody: {
          required: true,
          content: {
            "application/json": {
              schema: {
                type: "object",
                required: ["ref", "select"],
                properties: {
                  ref: { type: "string" },
                  channel: { type: "string", default: "stable" },
                  version: { type: "string" },
                  select: { type: "object", properties: { groups: { type: "array", items: { type: "string" } }, tags: { type: "array", items: { type: "string" } }, devices: { type: "array", items: { type: "string" } } } },
                  waves: { type: "string", default: "100%", example: "1%,10%,50%,100%" },
                  waveDelay: { type: "string", default: "10m" },
                  waveTimeout: { type: "string", default: "30m" },
                  maxFailures: { type: "string", default: "5%" },
                },
              },
            },
          },
        },
        responses: { "201": { description: "{rollout}" }, "400": { description: "Bad request, with the reason" }, "409": { description: "Version not published, devices busy, or no signing key" }, "413": { description: "Body above 64 KiB" } },
      },
    },
    "/api/v1/rollouts/{id}": { get: { summary: "One rollout: waves, devices, pause reason", parameters: [{ name: "id", in: "path", required: true, schema: { type: "string" } }], responses: { "200": { description: "{rollout}" }, "404": { description: "No such rollout" } } } },
    "/api/v1/rollouts/{id}/pause": { post: { summary: "Pause a running rollout", responses: { "200": { description: "{rollout}" }, "409": { description: "Not running" } } } },
    "/api/v1/rollouts/{id}/resume": { post: { summary: "Resume a paused rollout", responses: { "200": { description: "{rollout}" }, "409": { description: "Not paused" } } } },
    "/api/v1/rollouts/{id}/abort": { post: { summary: "Abort a rollout for good", responses: { "200": { description: "{rollout}" }, "409": { description: "Already finished" } } } },
    "/api/v1/openapi.json": { get: { summary: "This document", security: [], responses: { "200": { description: "OpenAPI 3.1" } } } },
  },
} as const;
