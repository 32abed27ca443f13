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

  it("would be refused by the validator if an operation lacked its path parameter", async () => {
    const broken = structuredClone(OPENAPI) as any;
    delete broken.paths["/api/v1/rollouts/{id}/abort"].post.parameters;
    const result = await validate(broken);
    expect(result.valid).toBe(false);
    expect(JSON.stringify(result.valid ? [] : result.errors)).toMatch(/rollouts\/\{id\}\/abort.*missing path parameter/);
  });
});
