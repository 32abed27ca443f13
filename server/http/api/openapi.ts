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
      Release: {
        type: "object",
        required: ["ref", "channel", "version", "sequence", "commit", "architecture", "issued", "expires", "manifest", "deltas"],
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
        },
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
    "/api/v1/openapi.json": { get: { summary: "This document", security: [], responses: { "200": { description: "OpenAPI 3.1" } } } },
  },
} as const;
