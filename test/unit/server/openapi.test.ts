import { validate } from "@readme/openapi-parser";
import { describe, expect, it } from "vitest";
import { OPENAPI } from "../../../server/http/api/openapi.ts";
import { CreateRolloutSchema } from "../../../server/http/api/rollouts.ts";

describe("openapi.json", () => {
  it("passes a standard OpenAPI validator", async () => {
    const result = await validate(structuredClone(OPENAPI) as never);
    expect(result.valid ? [] : result.errors).toEqual([]);
  });

  it("describes a request body with the schema its handler checks", () => {
    const body = (OPENAPI.paths as any)["/api/v1/rollouts"].post.requestBody.content["application/json"].schema;
    expect(body.additionalProperties).toBe(false);
    expect(body.required).toEqual(["ref", "select"]);
    expect(new RegExp(body.properties.channel.pattern).test("../x")).toBe(false);
    expect(CreateRolloutSchema.safeParse({ ref: "a/b", select: {}, extra: 1 }).success).toBe(false);
  });

  it("declares every path parameter", () => {
    for (const [path, methods] of Object.entries(OPENAPI.paths as Record<string, Record<string, { parameters?: { name: string }[] }>>)) {
      const names = [...path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
      for (const operation of Object.values(methods)) expect((operation.parameters ?? []).map((p) => p.name), path).toEqual(names);
    }
  });
});
